import v8 from 'node:v8';
import vm from 'node:vm';

/**
 * A full garbage collection, without starting jest under --expose-gc: the flag is set at run time and the
 * `gc` function taken from a fresh context. For tests of code whose timers must survive a collection.
 */
v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc') as () => void;

export const collectGarbage = (): void => gc();
