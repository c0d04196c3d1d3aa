/** What changed between a layer and its parent, as the GraphDriver protocol's Changes lists it. */

/** A change between a layer and its parent; Kind 0 modified, 1 added, 2 deleted. */
export interface Change {
  Path: string;
  Kind: 0 | 1 | 2;
}

/** Change kinds, named. */
export const ChangeKind = { Modify: 0, Add: 1, Delete: 2 } as const;
