import { A3sError } from "../errors.js";
import { isDebianKernel } from "./kernel-bundle.js";

/**
 * Debian's kernel modules without their signatures, and the kernel told not
 * to load the keys that would check them.
 *
 * Why: each finit_module of a signed module hashes the whole file
 * (SHA-512) and checks an RSA signature, and the kernel parses and checks
 * its built-in X.509 certificates at boot (load_system_certificate_list);
 * under TCG all of it is emulated work. Measured with Debian's 6.1 kernel,
 * scratch erofs boot, 3 interleaved boots each: init ~30 ms sooner to the
 * agent without the signatures, and the kernel ~50 ms sooner to /init
 * without the certificates (noisy host).
 *
 * Why it is safe: Debian's kernel does not enforce module signatures
 * (CONFIG_MODULE_SIG_FORCE is off, and the microvm machine boots without
 * Secure Boot, so without lockdown); an unsigned module loads and marks
 * the kernel tainted ('E', "module verification failed" once in the log).
 * The check would add nothing here: the modules come from the package apt
 * verified on the host, and whoever could change them in the initramfs
 * could as well change /init, which runs as PID 1 before any module loads.
 * A kernel of the user's own (run --kernel) keeps its modules as they are
 * and its keys: it may enforce signatures.
 */
export function packsUnsignedModules(kernelOrigin: string): boolean {
  return isDebianKernel(kernelOrigin);
}

/** The kernel command line for such a kernel: its built-in keys are not loaded (nothing is left to check). */
export const SKIP_MODULE_KEYS = "initcall_blacklist=load_system_certificate_list";

const MAGIC = Buffer.from("~Module signature appended~\n", "latin1");
/** struct module_signature (include/linux/module_signature.h): 5 one-byte fields, 3 bytes of padding, sig_len (big-endian). */
const SIGNATURE_INFO_BYTES = 12;

/**
 * The module's bytes without an appended signature (as the kernel's
 * mod_verify_sig finds it: the magic at the very end, the info before it,
 * the signature before that); unsigned modules come back as they are.
 */
export function withoutModuleSignature(ko: Buffer, path: string): Buffer {
  if (ko.length < MAGIC.length || !ko.subarray(ko.length - MAGIC.length).equals(MAGIC)) return ko;
  const infoEnd = ko.length - MAGIC.length;
  const sigLen = infoEnd >= SIGNATURE_INFO_BYTES ? ko.readUInt32BE(infoEnd - 4) : -1;
  const moduleEnd = infoEnd - SIGNATURE_INFO_BYTES - sigLen;
  if (sigLen <= 0 || moduleEnd <= 0) {
    throw new A3sError("EMODULE", `${path}: its module signature is malformed (signature length ${sigLen} in a ${ko.length}-byte file)`, {
      subject: path,
      hint: "the kernel package's module may be damaged: remove the kernel from the cache and fetch it again (a3s-rootfs kernel --fetch)",
    });
  }
  return ko.subarray(0, moduleEnd);
}
