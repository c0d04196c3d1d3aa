/**
 * The file tree of an image being written, held in memory as metadata only (file contents are
 * already in the image): nodes, names, hardlinks. Paths are resolved the way a confined layer
 * apply resolves them on disk: every directory on the way must be a real directory, never a
 * symlink, so an entry can only ever land inside the image.
 */
import { InvalidLayerError } from "../core/errors.ts";
import type { Timespec } from "../sys/types.ts";
import { NAME_MAX } from "./format.ts";

/** The kinds of inode an image holds. */
export type NodeType = "file" | "dir" | "symlink" | "char" | "block" | "fifo" | "socket";

/** Where a file's last partial block lives: inline after its inode (spooled until then), or in a padded data block. */
export type Tail = { spool: number } | "plain" | null;

/** One inode of the image. */
export interface ImageNode {
  type: NodeType;
  /** Permission bits including setuid/setgid/sticky. */
  mode: number;
  uid: number;
  gid: number;
  /** null: the image's build time (directories the layer implies, a root it does not list). */
  mtime: Timespec | null;
  xattrs: Map<string, Uint8Array>;
  /** How many directory entries name this inode (hardlinks); directories keep 1. */
  names: number;
  /** Content bytes (files), target bytes (symlinks), 0 otherwise. */
  size: number;
  /** Files: the first of their whole data blocks, when they have any. */
  blkaddr: number;
  /** Files: the tail's place; null when the size is a multiple of the block size. */
  tail: Tail;
  /** Symlinks: the target. */
  target?: Uint8Array;
  rdevMajor: number;
  rdevMinor: number;
  /** Directories: name → node. */
  children?: Map<string, ImageNode>;
}

/** Metadata of a new node. */
export interface NodeInit {
  mode: number;
  uid: number;
  gid: number;
  mtime: Timespec | null;
  xattrs?: Map<string, Uint8Array>;
}

/** A fresh node of `type` (a directory gets an empty child map). */
export function newNode(type: NodeType, init: NodeInit): ImageNode {
  return {
    type,
    mode: init.mode & 0o7777,
    uid: init.uid,
    gid: init.gid,
    mtime: init.mtime,
    xattrs: init.xattrs ?? new Map(),
    names: 1,
    size: 0,
    blkaddr: 0,
    tail: null,
    rdevMajor: 0,
    rdevMinor: 0,
    children: type === "dir" ? new Map() : undefined,
  };
}

const _utf8 = new TextEncoder();

/** The names and nodes of one image. */
export class ImageTree {
  /** The root directory. */
  readonly root: ImageNode;

  constructor(root: ImageNode) {
    if (root.type !== "dir") throw new TypeError("The root of an image must be a directory");
    this.root = root;
  }

  /**
   * The directory that holds the cleaned relative path `rel` (not ""). Each directory on the way
   * must be a real one; a missing one is made by `implied` when given, else the entry is refused.
   * Errors name `entry`, the archive's own spelling of the path.
   */
  parentOf(rel: string, entry: string, implied?: () => ImageNode): ImageNode {
    let dir = this.root;
    let at = 0;
    for (let slash = rel.indexOf("/"); slash >= 0; slash = rel.indexOf("/", slash + 1)) {
      const name = rel.slice(at, slash);
      at = slash + 1;
      let child = dir.children!.get(name);
      if (child === undefined) {
        if (!implied) throw new InvalidLayerError(`Invalid layer entry "${entry}": "${rel.slice(0, slash)}" does not exist`);
        child = implied();
        this.attach(dir, name, child, entry);
      } else if (child.type === "symlink") {
        throw new InvalidLayerError(`Invalid layer entry "${entry}": "${rel.slice(0, slash)}" is a symlink`);
      } else if (child.type !== "dir") {
        throw new InvalidLayerError(`Invalid layer entry "${entry}": "${rel.slice(0, slash)}" is not a directory`);
      }
      dir = child;
    }
    return dir;
  }

  /** The node `rel` names, never through a symlink (the last component may be one), or undefined. */
  lookup(rel: string, entry: string): ImageNode | undefined {
    if (rel === "") return this.root;
    return this.parentOf(rel, entry).children!.get(rel.slice(rel.lastIndexOf("/") + 1));
  }

  /** Name `node` `name` in `dir`; the name must be free. Refuses names EROFS cannot hold. */
  attach(dir: ImageNode, name: string, node: ImageNode, entry: string): void {
    if (name.length * 3 > NAME_MAX && _utf8.encode(name).byteLength > NAME_MAX) {
      throw new InvalidLayerError(`Invalid layer entry "${entry}": a name longer than ${NAME_MAX} bytes`);
    }
    dir.children!.set(name, node);
  }

  /** Remove `name` from `dir` and everything below it; hardlinks elsewhere keep their inode. */
  detach(dir: ImageNode, name: string): void {
    const node = dir.children!.get(name);
    if (node === undefined) return;
    dir.children!.delete(name);
    const stack = [node];
    while (stack.length) {
      const n = stack.pop()!;
      n.names--;
      if (n.children) for (const child of n.children.values()) stack.push(child);
    }
  }

  /** Add another name for the non-directory `node` (a hardlink). */
  link(dir: ImageNode, name: string, node: ImageNode, entry: string): void {
    this.attach(dir, name, node, entry);
    node.names++;
  }
}
