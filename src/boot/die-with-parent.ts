import { requireTool } from "../util/host-tool.js";

/**
 * The argv that runs `file args` so that it is killed (SIGKILL) the moment
 * the process that started it dies, by any death, SIGKILL included: QEMU and
 * virtiofsd must never outlive a run whose CLI was killed, holding the
 * workspace open. `setpriv --pdeathsig` (util-linux, essential on Debian)
 * sets PR_SET_PDEATHSIG and then execs the program, which keeps the setting.
 *
 * PR_SET_PDEATHSIG fires when the parent *thread* ends; Node spawns children
 * from its main thread, whose end is the process's end.
 */
export function dieWithParent(file: string, args: readonly string[]): { file: string; args: string[] } {
  const setpriv = requireTool("setpriv", "util-linux");
  return { file: setpriv, args: ["--pdeathsig", "KILL", "--", file, ...args] };
}
