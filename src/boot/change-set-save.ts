import { copyFile } from "node:fs/promises";
import { writeAtomically } from "../outputs/atomic.js";
import { readChangeSet } from "./change-set.js";

/**
 * run --changes FILE: the change set, checked by the same rules an apply
 * uses (a set that would be refused later is refused now), published at
 * `file` whole or not at all (a temporary name, then a rename).
 */
export async function saveChangeSet(received: string, file: string): Promise<void> {
  await readChangeSet(received, "the run's change set");
  await writeAtomically(file, (tmp) => copyFile(received, tmp));
}
