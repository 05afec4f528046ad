import { coalesceWakeUps } from '../src/placement/wake-ups';

/** A send that stays pending until the test answers it. */
function fakeSend() {
  const sends: Array<{ reason: string; answer(error?: Error): void }> = [];
  const send = (reason: string) =>
    new Promise<void>((resolve, reject) => {
      sends.push({ reason, answer: (error) => (error ? reject(error) : resolve()) });
    });
  return { send, sends };
}

const settle = () => new Promise((resolve) => setImmediate(resolve));

describe('coalesceWakeUps', () => {
  it('sends at once when nothing is on its way', async () => {
    const fake = fakeSend();
    const wake = coalesceWakeUps(fake.send);
    const done = wake('created');
    expect(fake.sends.map((s) => s.reason)).toEqual(['created']);
    fake.sends[0].answer();
    await expect(done).resolves.toBeUndefined();
  });

  it('folds the calls made while one send is on its way into one send that starts after it is answered', async () => {
    const fake = fakeSend();
    const wake = coalesceWakeUps(fake.send);
    let firstDone = false;
    let laterDone = 0;
    void wake('a').then(() => (firstDone = true));
    const later = Array.from({ length: 50 }, (_, i) => wake(`b${i}`).then(() => laterDone++));
    await settle();
    // The first send may have started before those bots were queued: it does not count for them.
    expect(fake.sends).toHaveLength(1);
    fake.sends[0].answer();
    await settle();
    expect(firstDone).toBe(true);
    expect(laterDone).toBe(0);
    expect(fake.sends.map((s) => s.reason)).toEqual(['a', 'b0']);
    fake.sends[1].answer();
    await Promise.all(later);
    expect(laterDone).toBe(50);
    expect(fake.sends).toHaveLength(2);
  });

  it('a call made while the second send is on its way gets a third', async () => {
    const fake = fakeSend();
    const wake = coalesceWakeUps(fake.send);
    void wake('a');
    const second = wake('b');
    fake.sends[0].answer();
    await settle();
    expect(fake.sends).toHaveLength(2);
    let thirdDone = false;
    const third = wake('c').then(() => (thirdDone = true));
    fake.sends[1].answer();
    await second;
    await settle();
    expect(thirdDone).toBe(false);
    expect(fake.sends.map((s) => s.reason)).toEqual(['a', 'b', 'c']);
    fake.sends[2].answer();
    await third;
  });

  it('a failed send fails its callers, and the waiting ones still get a send of their own', async () => {
    const fake = fakeSend();
    const wake = coalesceWakeUps(fake.send);
    const first = wake('a');
    const second = wake('b');
    fake.sends[0].answer(new Error('redis away'));
    await expect(first).rejects.toThrow('redis away');
    await settle();
    expect(fake.sends).toHaveLength(2);
    fake.sends[1].answer(new Error('still away'));
    await expect(second).rejects.toThrow('still away');
    // nothing is left on its way: the next call sends at once
    const third = wake('c');
    expect(fake.sends).toHaveLength(3);
    fake.sends[2].answer();
    await third;
  });
});
