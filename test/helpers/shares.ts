import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { tempDir } from "./temp-dir.js";

/** A fresh workspace directory and a skills directory holding one skill, as a run shares them. */
export function makeShares(): { workspace: string; skills: string } {
  const dir = tempDir();
  const workspace = join(dir, "workspace");
  const skills = join(dir, "skills");
  mkdirSync(workspace);
  mkdirSync(skills);
  writeFileSync(join(skills, "skill.md"), "a skill\n");
  return { workspace, skills };
}
