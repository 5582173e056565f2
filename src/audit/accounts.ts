/**
 * Password fields of /etc/shadow and /etc/passwd. A hash shipped in an image
 * can be cracked offline by anyone who has the image, and an empty field
 * lets anyone log in as that account with no password at all; an agent VM
 * has no interactive login, so it needs neither.
 */

export interface PasswordField {
  /** The file the field was found in. */
  readonly file: string;
  readonly account: string;
  /** "hash": a crackable password hash; "empty": no password needed. */
  readonly problem: "hash" | "empty";
}

/**
 * Fields that lock an account: "*" and "!" (and "!!", "!*"...), "x" in
 * passwd (the hash is in shadow). A "!" in front of a hash locks the
 * account but leaves the hash readable, so "!$6$..." still counts as a hash.
 */
function classify(field: string, inPasswd: boolean): PasswordField["problem"] | undefined {
  if (field === "") return "empty";
  if (inPasswd && field === "x") return undefined;
  const unlocked = field.replace(/^!+/, "");
  if (unlocked === "" || unlocked.startsWith("*") || (inPasswd && unlocked === "x")) return undefined;
  return "hash";
}

/** Accounts in a shadow (or passwd) file with a password hash or an empty password field. */
export function passwordProblems(file: string, text: string, kind: "shadow" | "passwd"): PasswordField[] {
  const out: PasswordField[] = [];
  for (const line of text.split("\n")) {
    if (line === "" || line.startsWith("#") || line.startsWith("+") || line.startsWith("-")) continue;
    const fields = line.split(":");
    if (fields.length < 2) continue;
    const problem = classify(fields[1] as string, kind === "passwd");
    if (problem) out.push({ file, account: fields[0] as string, problem });
  }
  return out;
}
