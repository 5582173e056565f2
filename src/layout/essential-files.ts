import type { GuestLayout } from "./guest-layout.js";

/**
 * The minimal /etc a static agent and its libc expect: two users, two
 * groups, name resolution from files then DNS. Each file is mode 0644, owned
 * 0:0. root's shell is named for compatibility with tools that read passwd;
 * the scratch rootfs deliberately has no /bin/sh.
 */
export function essentialFiles(layout: GuestLayout): { path: string; content: string }[] {
  const nameservers = layout.dns.map((ip) => `nameserver ${ip}\n`).join("");
  return [
    { path: "/etc/passwd", content: "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n" },
    { path: "/etc/group", content: "root:x:0:\nnogroup:x:65534:\n" },
    { path: "/etc/hosts", content: "127.0.0.1 localhost\n::1 localhost\n" },
    { path: "/etc/resolv.conf", content: nameservers },
    { path: "/etc/nsswitch.conf", content: "passwd: files\ngroup: files\nhosts: files dns\n" },
    { path: "/etc/hostname", content: `${layout.hostname}\n` },
  ];
}
