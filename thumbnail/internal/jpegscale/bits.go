// Copyright 2009 The Go Authors. All rights reserved.
// Use of this source code is governed by a BSD-style
// license that can be found in the LICENSE file.

// This file is derived from Go's src/image/jpeg/huffman.go and scan.go
// (go1.26.8); see NOTICE. The bit reader is new: it reads the entropy-coded
// data from a []byte into a 64-bit accumulator, eight bytes at a time when
// there is no 0xff byte among them. The sequential block decoding follows
// image/jpeg's processSOS loop, with the accumulator kept in local variables
// and a look-up table for whole AC coefficients.

package jpegscale

import "encoding/binary"

// The bit reader. d.acc holds d.nBits unread bits, most significant first;
// the bits below them are zero. When the entropy-coded data ends (at a marker
// or at the end of the input), refill appends zero bits and counts them in
// d.nPad: the data was overrun, which is an error, if fewer than d.nPad bits
// are left. Decoding a block reads a bounded number of bits and refill pads as
// much as it is asked to, so the overrun is checked once per block, not at
// every read: image/jpeg reports it as soon as it reads past the end, with
// the same outcome (an error; blockError makes it the error reported).

// resetBits empties the bit reader, at the start of a scan and at restart
// markers: bits left over are padding.
func (d *decoder) resetBits() {
	d.acc, d.nBits, d.nPad = 0, 0, 0
}

// refill returns acc and n topped up to at least 57 bits.
func (d *decoder) refill(acc uint64, n uint) (uint64, uint) {
	src := d.src
	p := d.pos
	if p+8 <= len(src) {
		v := binary.BigEndian.Uint64(src[p:])
		// Without a 0xff byte (a zero byte of ^v), there is no byte
		// stuffing or marker to take care of.
		if x := ^v; (x-0x0101010101010101)&^x&0x8080808080808080 == 0 {
			k := (64 - n) >> 3 // whole bytes that fit in acc
			acc |= v >> (64 - 8*k) << (64 - n - 8*k)
			d.pos = p + int(k)
			return acc, n + 8*k
		}
	}
	for n <= 56 {
		if p >= len(src) {
			break
		}
		c := src[p]
		if c == 0xff {
			if p+1 >= len(src) || src[p+1] != 0x00 {
				break // A marker (or the end of the input).
			}
			p += 2 // Byte stuffing: 0xff 0x00 stands for 0xff.
		} else {
			p++
		}
		acc |= uint64(c) << (56 - n)
		n += 8
	}
	d.pos = p
	if n <= 56 {
		// The end of the entropy-coded data: pad with zero bits.
		pad := (64 - n) &^ 7
		n += pad
		d.nPad += pad
	}
	return acc, n
}

// checkOverrun reports an error if more bits were read than the
// entropy-coded data holds.
func (d *decoder) checkOverrun() error {
	if d.nBits < d.nPad {
		return d.overrun()
	}
	return nil
}

func (d *decoder) overrun() error {
	if d.pos >= len(d.src)-1 {
		// The input ends (maybe with a lone 0xff) inside the scan.
		return errShortData
	}
	// image/jpeg says "missing 0xff00 sequence".
	return formatError("marker inside entropy-coded data")
}

// getBits returns the next n bits, 1 <= n <= 16.
func (d *decoder) getBits(n uint) uint32 {
	if d.nBits < 32 {
		d.acc, d.nBits = d.refill(d.acc, d.nBits)
	}
	x := uint32(d.acc >> (64 - n))
	d.acc <<= n
	d.nBits -= n
	return x
}

// receiveExtend is the composition of RECEIVE and EXTEND, specified in section
// F.2.2.1, for 1 <= t <= 16.
func (d *decoder) receiveExtend(t uint) int32 {
	x := int32(d.getBits(t))
	if x < 1<<(t-1) {
		x += -1<<t + 1
	}
	return x
}

// decodeHuffman returns the next Huffman-coded value from the bit-stream,
// decoded according to h.
func (d *decoder) decodeHuffman(h *huffman) (uint8, error) {
	if d.nBits < 32 {
		d.acc, d.nBits = d.refill(d.acc, d.nBits)
	}
	if e := h.lut[d.acc>>(64-lutBits)]; e != 0 {
		n := uint(e & 0xff)
		d.acc <<= n
		d.nBits -= n
		return uint8(e >> 8), nil
	}
	v, n, err := h.decodeSlow(d.acc)
	if err != nil {
		return 0, err
	}
	d.acc <<= n
	d.nBits -= n
	return v, nil
}

// decodeDC decodes a DC coefficient difference (section F.2.2.1).
func (d *decoder) decodeDC(h *huffman) (int32, error) {
	t, err := d.decodeHuffman(h)
	if err != nil {
		return 0, err
	}
	if t > 16 {
		return 0, unsupportedError("excessive DC component")
	}
	if t == 0 {
		return 0, nil
	}
	return d.receiveExtend(uint(t)), nil
}

// decodeBlock decodes the next block of component c in a sequential scan
// into b, which must be zero: dequantized coefficients in natural order. It
// reports whether any AC coefficient was set.
func (d *decoder) decodeBlock(b *block, c *scanComp) (nz bool, err error) {
	acc, n := d.acc, d.nBits
	if n < 32 {
		acc, n = d.refill(acc, n)
	}
	q := c.q

	// Decode the DC coefficient, as specified in section F.2.2.1.
	var t uint
	if e := c.dc.lut[acc>>(64-lutBits)]; e != 0 {
		t = uint(e >> 8)
		l := uint(e & 0xff)
		acc <<= l
		n -= l
	} else {
		v, l, err := c.dc.decodeSlow(acc)
		if err != nil {
			d.acc, d.nBits = acc, n
			return false, err
		}
		t = uint(v)
		acc <<= l
		n -= l
	}
	if t > 16 {
		d.acc, d.nBits = acc, n
		return false, unsupportedError("excessive DC component")
	}
	if t != 0 {
		x := int32(acc >> (64 - t))
		acc <<= t
		n -= t
		if x < 1<<(t-1) {
			x += -1<<t + 1
		}
		c.pred += x
	}
	b[0] = c.pred * q[0]

	if d.eobRun > 0 {
		d.eobRun--
	} else {
		// Decode the AC coefficients, as specified in section F.2.2.2.
		h := c.ac
		for zig := 1; zig < blockSize; {
			if n < 32 {
				acc, n = d.refill(acc, n)
			}
			if f := h.fastAC[acc>>(64-lutBits)]; f != 0 {
				if f>>16 == 0 {
					// End of block.
					l := uint(f) & 15
					acc <<= l
					n -= l
					break
				}
				zig += int(f>>8) & 15
				if zig >= blockSize {
					// Like image/jpeg, drop the block's remaining
					// coefficient without reading its bits.
					l := uint(f>>4) & 15
					acc <<= l
					n -= l
					break
				}
				l := uint(f) & 15
				acc <<= l
				n -= l
				b[unzig[zig&63]&63] = (f >> 16) * q[zig&63] // (zig < 64: the masks elide bounds checks)
				nz = true
				zig++
				continue
			}
			var value uint8
			if e := h.lut[acc>>(64-lutBits)]; e != 0 {
				value = uint8(e >> 8)
				l := uint(e & 0xff)
				acc <<= l
				n -= l
			} else {
				v, l, err := h.decodeSlow(acc)
				if err != nil {
					d.acc, d.nBits = acc, n
					return false, err
				}
				value = v
				acc <<= l
				n -= l
			}
			val0 := int(value >> 4)
			val1 := uint(value & 0x0f)
			if val1 != 0 {
				zig += val0
				if zig >= blockSize {
					break
				}
				x := int32(acc >> (64 - val1))
				acc <<= val1
				n -= val1
				if x < 1<<(val1-1) {
					x += -1<<val1 + 1
				}
				b[unzig[zig&63]&63] = x * q[zig&63]
				nz = true
				zig++
			} else {
				if val0 != 0x0f {
					eobRun := uint16(1) << val0
					if val0 != 0 {
						eobRun |= uint16(acc >> (64 - uint(val0)))
						acc <<= uint(val0)
						n -= uint(val0)
					}
					d.eobRun = eobRun - 1
					break
				}
				zig += 0x10
			}
		}
	}
	d.acc, d.nBits = acc, n
	if n < d.nPad {
		return false, d.overrun()
	}
	return nz, nil
}

// decodeBlockDC is decodeBlock for 1/8 scale: it reads the AC coefficients
// without keeping them, and returns the dequantized DC coefficient.
func (d *decoder) decodeBlockDC(c *scanComp) (int32, error) {
	acc, n := d.acc, d.nBits
	if n < 32 {
		acc, n = d.refill(acc, n)
	}

	var t uint
	if e := c.dc.lut[acc>>(64-lutBits)]; e != 0 {
		t = uint(e >> 8)
		l := uint(e & 0xff)
		acc <<= l
		n -= l
	} else {
		v, l, err := c.dc.decodeSlow(acc)
		if err != nil {
			d.acc, d.nBits = acc, n
			return 0, err
		}
		t = uint(v)
		acc <<= l
		n -= l
	}
	if t > 16 {
		d.acc, d.nBits = acc, n
		return 0, unsupportedError("excessive DC component")
	}
	if t != 0 {
		x := int32(acc >> (64 - t))
		acc <<= t
		n -= t
		if x < 1<<(t-1) {
			x += -1<<t + 1
		}
		c.pred += x
	}

	if d.eobRun > 0 {
		d.eobRun--
	} else {
		h := c.ac
		for zig := 1; zig < blockSize; {
			if n < 32 {
				acc, n = d.refill(acc, n)
			}
			if f := h.fastAC[acc>>(64-lutBits)]; f != 0 {
				l := uint(f) & 15
				if f>>16 == 0 {
					// End of block.
					acc <<= l
					n -= l
					break
				}
				zig += int(f>>8) & 15
				if zig >= blockSize {
					l = uint(f>>4) & 15
				}
				acc <<= l
				n -= l
				zig++
				continue
			}
			var value uint8
			if e := h.lut[acc>>(64-lutBits)]; e != 0 {
				value = uint8(e >> 8)
				l := uint(e & 0xff)
				acc <<= l
				n -= l
			} else {
				v, l, err := h.decodeSlow(acc)
				if err != nil {
					d.acc, d.nBits = acc, n
					return 0, err
				}
				value = v
				acc <<= l
				n -= l
			}
			val0 := int(value >> 4)
			val1 := uint(value & 0x0f)
			if val1 != 0 {
				zig += val0
				if zig >= blockSize {
					break
				}
				acc <<= val1
				n -= val1
				zig++
			} else {
				if val0 != 0x0f {
					eobRun := uint16(1) << val0
					if val0 != 0 {
						eobRun |= uint16(acc >> (64 - uint(val0)))
						acc <<= uint(val0)
						n -= uint(val0)
					}
					d.eobRun = eobRun - 1
					break
				}
				zig += 0x10
			}
		}
	}
	d.acc, d.nBits = acc, n
	if n < d.nPad {
		return 0, d.overrun()
	}
	return c.pred * c.q[0], nil
}
