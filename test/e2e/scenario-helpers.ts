/** Helpers of the end-to-end scenario: finding layer directories, reading dockerd's layer records, build contexts. */
import * as fs from "node:fs";
import * as path from "node:path";

// dockerd names image and container layers with 64 hex digits (a container's init layer adds "-init");
// BuildKit's snapshots get 25-character ids. A name holding either (e.g. a driver's "rm-<id>") is a layer.
const LAYER_NAME = /[0-9a-f]{64}(-init)?$|^[a-z0-9]{25}$/;

/**
 * Directories under `home` (up to `depth` levels down, symlinks not followed) whose names are layer ids,
 * whatever the driver's layout (`dir/<id>`, `<id>/diff`, `tmp/rm-<id>`). A layer's own contents are not searched.
 *
 * @example
 * ```ts
 * layerDirs("/tmp/strata-e2e-x/root/strata-e2e-abc"); // ["/…/dir/3f…a1", "/…/dir/3f…a1-init"]
 * ```
 */
export function layerDirs(home: string, depth = 3): string[] {
  const out: string[] = [];
  const walk = (dir: string, left: number) => {
    let entries: fs.Dirent[];
    try {
      entries = fs.readdirSync(dir, { withFileTypes: true });
    } catch {
      return;
    }
    for (const e of entries) {
      if (!e.isDirectory()) continue;
      const p = path.join(dir, e.name);
      if (LAYER_NAME.test(e.name)) out.push(p);
      else if (left > 1) walk(p, left - 1);
    }
  };
  walk(home, depth);
  return out.sort();
}

/** The layer ids dockerd keeps for a container: its mount id and init id (`image/<driver>/layerdb/mounts/<id>/`). */
export function mountLayerIds(dataRoot: string, driver: string, containerId: string): string[] {
  const dir = path.join(dataRoot, "image", driver, "layerdb", "mounts", containerId);
  return ["mount-id", "init-id"].map((f) => fs.readFileSync(path.join(dir, f), "utf8").trim());
}

/**
 * Write a build context `<root>/ctx-<tag>`: FROM the base image, a RUN that writes a file and deletes
 * /bin/ls, a COPY of a context file. The tag goes into the files so two builders never share cache.
 */
export function writeBuildContext(root: string, tag: string, from: string): string {
  const dir = path.join(root, `ctx-${tag}`);
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(path.join(dir, "hello.txt"), `hello from ${tag}\n`);
  fs.writeFileSync(
    path.join(dir, "Dockerfile"),
    `FROM ${from}\nRUN echo ${tag} > /built.txt && rm /bin/ls\nCOPY hello.txt /hello.txt\n`,
  );
  return dir;
}
