/**
 * Folds a process's wake-ups of the dispatcher into as few sends as keep every one of them: a caller needs
 * a wake-up sent after its call (its bot is in the global queue by then), so a call made while one is on
 * its way waits for the next send, which starts once that one is answered and covers every call made in
 * between. Under a burst of creates that is one send per round trip to Redis instead of one per bot. The
 * first reason given since the last send started names the next one.
 */
export function coalesceWakeUps(send: (reason: string) => Promise<void>): (reason: string) => Promise<void> {
  let running: Promise<void> | undefined;
  let next: Promise<void> | undefined;
  const start = (reason: string) => {
    const sent = send(reason).finally(() => {
      if (running === sent) running = undefined;
    });
    running = sent;
    return sent;
  };
  return (reason) => {
    if (!running) return start(reason);
    next ??= running
      .catch(() => undefined)
      .then(() => {
        next = undefined;
        return start(reason);
      });
    return next;
  };
}
