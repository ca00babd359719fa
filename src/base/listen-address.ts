/** A TCP address to listen on: `host:port`, an IPv6 host in brackets (`[::1]:9477`). */
export interface ListenAddress {
  host: string;
  /** 0 lets the kernel pick a free port (the daemon logs the one it got). */
  port: number;
}

const FORM = /^(?:\[([0-9A-Fa-f:.]+)\]|([A-Za-z0-9.-]+)):([0-9]{1,5})$/;

/** The address `text` names, or undefined when it is not `host:port` with a port of 0-65535. */
export function parseListenAddress(text: string): ListenAddress | undefined {
  const m = FORM.exec(text);
  if (!m) return undefined;
  const port = Number(m[3]);
  if (port > 65535) return undefined;
  return { host: m[1] ?? m[2]!, port };
}
