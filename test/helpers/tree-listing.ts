import { lstatSync, readdirSync, readFileSync, readlinkSync } from "node:fs";
import { join } from "node:path";

/** Every path under root with what it is: "d", "f:CONTENT" or "l:TARGET". */
export function treeListing(root: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (rel: string): void => {
    for (const name of readdirSync(join(root, rel)).sort()) {
      const r = rel ? `${rel}/${name}` : name;
      const st = lstatSync(join(root, r));
      if (st.isSymbolicLink()) out[r] = `l:${readlinkSync(join(root, r))}`;
      else if (st.isDirectory()) {
        out[r] = "d";
        walk(r);
      } else out[r] = `f:${readFileSync(join(root, r), "utf8")}`;
    }
  };
  walk("");
  return out;
}
