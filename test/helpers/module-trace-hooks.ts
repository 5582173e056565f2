// Module customization hooks (node:module register) that record every module
// a process loads, one URL a line, in the file named at registration. Run in
// the loader's own thread; trace-modules.ts registers them.
import { appendFileSync } from "node:fs";

let out = "";

export function initialize(data: { out: string }): void {
  out = data.out;
}

interface LoadContext {
  format?: string | null | undefined;
}
type NextLoad = (url: string, context: LoadContext) => Promise<unknown>;

export async function load(url: string, context: LoadContext, nextLoad: NextLoad): Promise<unknown> {
  appendFileSync(out, `${url}\n`);
  return nextLoad(url, context);
}
