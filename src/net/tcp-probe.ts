import { connect } from 'node:net';

/** Whether host:port accepts a TCP connection within timeoutMs. Never throws. */
export type TcpProbe = (
  host: string,
  port: number,
  timeoutMs: number,
) => Promise<{ ok: boolean; detail: string }>;

export const probeTcp: TcpProbe = (host, port, timeoutMs) =>
  new Promise((resolve) => {
    const socket = connect({ host, port });
    const done = (ok: boolean, detail: string) => {
      clearTimeout(timer);
      socket.destroy();
      resolve({ ok, detail });
    };
    const timer = setTimeout(() => done(false, `no answer within ${timeoutMs} ms`), timeoutMs);
    socket.once('connect', () => done(true, 'accepts connections'));
    socket.once('error', (err) => done(false, err.message));
  });
