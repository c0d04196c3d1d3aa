/** Version and build information. */
import pkg from "../../package.json" with { type: "json" };

// Set by compile.sh (`bun build --define`); absent when running from source.
declare const STRATA_COMMIT: string | undefined;

/** The package version. */
export const VERSION: string = pkg.version;

/** The commit the binary was built from, or "source". */
export function commit(): string {
  return typeof STRATA_COMMIT === "string" ? STRATA_COMMIT : "source";
}

/** `strata version` output. */
export function versionText(runtime: string): string {
  return `strata ${VERSION} (commit ${commit()}, runtime ${runtime})`;
}
