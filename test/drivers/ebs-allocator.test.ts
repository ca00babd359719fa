import { describe, expect, it } from 'vitest';
import { canonical, DEFAULT_DEVICE_NAMES, DeviceAllocator } from '../../drivers/ebs/allocator.js';

/** DeviceAllocator: pure bookkeeping of EBS device names per instance. */

const I1 = 'i-0123456789abcdef0';
const I2 = 'i-0fedcba9876543210';
const ROOT = ['/dev/xvda'];

describe('DeviceAllocator', () => {
  it('hands out the candidates in order, /dev/xvdf first', () => {
    const a = new DeviceAllocator();
    expect(a.allocate(I1, ROOT)).toBe('/dev/xvdf');
    expect(a.allocate(I1, ROOT)).toBe('/dev/xvdg');
    expect(a.allocate(I1, ROOT)).toBe('/dev/xvdh');
  });

  it('has 47 default names: /dev/xvdf../dev/xvdz, then /dev/xvdba../dev/xvdbz', () => {
    expect(DEFAULT_DEVICE_NAMES).toHaveLength(21 + 26);
    expect(DEFAULT_DEVICE_NAMES[0]).toBe('/dev/xvdf');
    expect(DEFAULT_DEVICE_NAMES[20]).toBe('/dev/xvdz');
    expect(DEFAULT_DEVICE_NAMES[21]).toBe('/dev/xvdba');
    expect(DEFAULT_DEVICE_NAMES.at(-1)).toBe('/dev/xvdbz');
    expect(new Set(DEFAULT_DEVICE_NAMES).size).toBe(DEFAULT_DEVICE_NAMES.length);
  });

  it('skips the names the instance already uses, in either spelling', () => {
    const a = new DeviceAllocator();
    // /dev/sdf is the same attachment point as /dev/xvdf; /dev/xvdg is used as it is.
    expect(a.allocate(I1, ['/dev/sda1', '/dev/sdf', '/dev/xvdg'])).toBe('/dev/xvdh');
  });

  it('skips a used /dev/xvd name too when the candidates are spelled /dev/sd', () => {
    const a = new DeviceAllocator(['/dev/sdf', '/dev/sdg']);
    expect(a.allocate(I1, ['/dev/xvdf'])).toBe('/dev/sdg');
  });

  it('never hands out a reserved name twice while its attach is in flight', () => {
    const a = new DeviceAllocator();
    const first = a.allocate(I1, ROOT);
    // The instance does not list the name yet: the attach has not reached EC2.
    const second = a.allocate(I1, ROOT);
    expect(first).toBe('/dev/xvdf');
    expect(second).toBe('/dev/xvdg');
    expect(second).not.toBe(first);
  });

  it('makes a released name available again', () => {
    const a = new DeviceAllocator();
    const name = a.allocate(I1, ROOT)!;
    a.release(I1, name);
    expect(a.allocate(I1, ROOT)).toBe('/dev/xvdf');
  });

  it('releases a reservation whatever spelling the caller uses', () => {
    const a = new DeviceAllocator();
    expect(a.allocate(I1, ROOT)).toBe('/dev/xvdf');
    a.release(I1, '/dev/sdf');
    expect(a.allocate(I1, ROOT)).toBe('/dev/xvdf');
  });

  it('never hands out a tainted name again, even after a release or when the instance no longer uses it', () => {
    const a = new DeviceAllocator();
    const name = a.allocate(I1, ROOT)!;
    a.taint(I1, name);
    expect(a.isTainted(I1, '/dev/xvdf')).toBe(true);
    expect(a.isTainted(I1, '/dev/sdf')).toBe(true);
    a.release(I1, name);
    expect(a.allocate(I1, ROOT)).toBe('/dev/xvdg');
    expect(a.allocate(I1, [])).toBe('/dev/xvdh');
  });

  it('taint ends the reservation: the next name is not blocked by it', () => {
    const a = new DeviceAllocator(['/dev/xvdf', '/dev/xvdg']);
    a.allocate(I1, []);
    a.taint(I1, '/dev/xvdf');
    expect(a.allocate(I1, [])).toBe('/dev/xvdg');
    a.release(I1, '/dev/xvdg');
    expect(a.allocate(I1, [])).toBe('/dev/xvdg');
  });

  it('keeps reservations and taints separate per instance', () => {
    const a = new DeviceAllocator();
    expect(a.allocate(I1, ROOT)).toBe('/dev/xvdf');
    a.taint(I1, '/dev/xvdf');
    expect(a.allocate(I1, ROOT)).toBe('/dev/xvdg'); // reserved on I1
    expect(a.isTainted(I2, '/dev/xvdf')).toBe(false);
    expect(a.allocate(I2, ROOT)).toBe('/dev/xvdf');
    a.release(I2, '/dev/xvdg'); // releasing on another instance changes nothing on I1
    expect(a.allocate(I1, ROOT)).toBe('/dev/xvdh');
  });

  it('returns undefined when every candidate is used, reserved or tainted', () => {
    const a = new DeviceAllocator(['/dev/xvdf', '/dev/xvdg', '/dev/xvdh']);
    expect(a.allocate(I1, ['/dev/sdf'])).toBe('/dev/xvdg'); // reserved now
    a.taint(I1, a.allocate(I1, ['/dev/sdf'])!); // /dev/xvdh, tainted now
    expect(a.allocate(I1, ['/dev/sdf'])).toBeUndefined();
    expect(a.allocate(I2, ['/dev/sdf'])).toBe('/dev/xvdg'); // another instance still has room
  });

  it('returns undefined for an instance that uses every default name', () => {
    const a = new DeviceAllocator();
    expect(a.allocate(I1, DEFAULT_DEVICE_NAMES)).toBeUndefined();
  });

  it('hands out a custom candidate list in its order and spelling', () => {
    const a = new DeviceAllocator(['/dev/sdz', '/dev/sdy', '/dev/sdx']);
    expect(a.allocate(I1, ['/dev/xvdz'])).toBe('/dev/sdy');
    expect(a.allocate(I1, ['/dev/xvdz'])).toBe('/dev/sdx');
    expect(a.allocate(I1, ['/dev/xvdz'])).toBeUndefined();
    expect(a.allocate(I1, [])).toBe('/dev/sdz'); // once the instance frees it
  });

  it('accepts any iterable of used names', () => {
    const a = new DeviceAllocator();
    expect(a.allocate(I1, new Set(['/dev/xvdf']))).toBe('/dev/xvdg');
  });
});

describe('canonical', () => {
  it.each([
    ['/dev/sdf', '/dev/xvdf'],
    ['/dev/xvdf', '/dev/xvdf'],
    ['/dev/sdba', '/dev/xvdba'],
    ['/dev/sda1', '/dev/xvda1'],
    ['/dev/nvme1n1', '/dev/nvme1n1'],
  ])('%s -> %s', (name, want) => {
    expect(canonical(name)).toBe(want);
  });
});
