// Copyright 2012 The Go Authors. All rights reserved.
// Use of this source code is governed by a BSD-style
// license that can be found in the LICENSE file.

// This file is derived from Go's src/image/jpeg/scan.go (go1.26.8); see
// NOTICE. Changes: images are allocated and blocks reconstructed at
// 1/2^shift scale; a progressive image keeps, for each block, only the
// coefficients the scale needs (as int16) and a mask of the non-zero ones,
// which successive approximation refinements need; the entropy decoding reads
// through the 64-bit bit reader of bits.go; non-interleaved scans are laid out
// as section A.2 says (image/jpeg differs in rare cases, see scanLayout); the
// first scan is checked against the data left before allocating.

package jpegscale

import (
	"image"
	"math/bits"
)

// makeImg allocates and initializes the destination image.
func (d *decoder) makeImg(mxx, myy int) {
	bs := 8 >> d.shift // pixels per block side at this scale
	sw := (d.width + 1<<d.shift - 1) >> d.shift
	sh := (d.height + 1<<d.shift - 1) >> d.shift
	if d.nComp == 1 {
		m := image.NewGray(image.Rect(0, 0, bs*mxx, bs*myy))
		d.img1 = m.SubImage(image.Rect(0, 0, sw, sh)).(*image.Gray)
		return
	}

	h0 := d.comp[0].h
	v0 := d.comp[0].v
	hRatio := h0 / d.comp[1].h
	vRatio := v0 / d.comp[1].v
	var subsampleRatio image.YCbCrSubsampleRatio
	switch hRatio<<4 | vRatio {
	case 0x11:
		subsampleRatio = image.YCbCrSubsampleRatio444
	case 0x12:
		subsampleRatio = image.YCbCrSubsampleRatio440
	case 0x21:
		subsampleRatio = image.YCbCrSubsampleRatio422
	case 0x22:
		subsampleRatio = image.YCbCrSubsampleRatio420
	case 0x41:
		subsampleRatio = image.YCbCrSubsampleRatio411
	case 0x42:
		subsampleRatio = image.YCbCrSubsampleRatio410
	default:
		panic("unreachable") // processSOF allows no other ratio
	}
	m := image.NewYCbCr(image.Rect(0, 0, bs*h0*mxx, bs*v0*myy), subsampleRatio)
	d.img3 = m.SubImage(image.Rect(0, 0, sw, sh)).(*image.YCbCr)

	if d.nComp == 4 {
		h3, v3 := d.comp[3].h, d.comp[3].v
		d.blackPix = make([]byte, bs*h3*mxx*bs*v3*myy)
		d.blackStride = bs * h3 * mxx
	}
}

// plane returns the destination samples of component compIndex.
func (d *decoder) plane(compIndex int) (pix []byte, stride int) {
	if d.nComp == 1 {
		return d.img1.Pix, d.img1.Stride
	}
	switch compIndex {
	case 0:
		return d.img3.Y, d.img3.YStride
	case 1:
		return d.img3.Cb, d.img3.CStride
	case 2:
		return d.img3.Cr, d.img3.CStride
	}
	return d.blackPix, d.blackStride
}

// scanComp is a component of the scan being decoded.
type scanComp struct {
	compIndex int
	h, v      int
	dc, ac    *huffman
	q         *[blockSize]int32
	pred      int32    // DC predictor
	pix       []byte   // sequential: destination samples
	stride    int      // of pix
	coef      []int16  // progressive: accumulated coefficients (d.progKeep per block)
	mask      []uint64 // progressive: non-zero AC coefficients
	cstride   int      // blocks per row in coef and mask
}

// scan holds the parameters of the scan being decoded.
type scan struct {
	comps    [maxComponents]scanComp
	nComp    int
	zigStart int
	zigEnd   int
	ah, al   uint
}

// Specified in section B.2.3.
func (d *decoder) processSOS(n int) error {
	if d.nComp == 0 {
		return formatError("missing SOF marker")
	}
	if n < 6 || 4+2*d.nComp < n || n%2 != 0 {
		return formatError("SOS has wrong length")
	}
	tmp, err := d.readFull(n)
	if err != nil {
		return err
	}
	nComp := int(tmp[0])
	if n != 4+2*nComp {
		return formatError("SOS length inconsistent with number of components")
	}
	var sc scan
	sc.nComp = nComp
	var td, ta [maxComponents]uint8
	totalHV := 0
	for i := 0; i < nComp; i++ {
		cs := tmp[1+2*i] // Component selector.
		compIndex := -1
		for j, comp := range d.comp[:d.nComp] {
			if cs == comp.c {
				compIndex = j
			}
		}
		if compIndex < 0 {
			return formatError("unknown component selector")
		}
		sc.comps[i].compIndex = compIndex
		// Section B.2.3 states that "the value of Cs_j shall be different from
		// the values of Cs_1 through Cs_(j-1)". Since we have previously
		// verified that a frame's component identifiers (C_i values in section
		// B.2.2) are unique, it suffices to check that the implicit indexes
		// into d.comp are unique.
		for j := 0; j < i; j++ {
			if sc.comps[i].compIndex == sc.comps[j].compIndex {
				return formatError("repeated component selector")
			}
		}
		totalHV += d.comp[compIndex].h * d.comp[compIndex].v

		// The baseline t <= 1 restriction is specified in table B.3.
		td[i] = tmp[2+2*i] >> 4
		if t := td[i]; t > maxTh || (d.baseline && t > 1) {
			return formatError("bad Td value")
		}
		ta[i] = tmp[2+2*i] & 0x0f
		if t := ta[i]; t > maxTh || (d.baseline && t > 1) {
			return formatError("bad Ta value")
		}
	}
	// Section B.2.3 states that if there is more than one component then the
	// total H*V values in a scan must be <= 10.
	if d.nComp > 1 && totalHV > 10 {
		return formatError("total sampling factors too large")
	}

	// zigStart and zigEnd are the spectral selection bounds.
	// ah and al are the successive approximation high and low values.
	// The spec calls these values Ss, Se, Ah and Al.
	//
	// For progressive JPEGs, these are the two more-or-less independent
	// aspects of progression. Spectral selection progression is when not
	// all of a block's 64 DCT coefficients are transmitted in one pass.
	// For example, three passes could transmit coefficient 0 (the DC
	// component), coefficients 1-5, and coefficients 6-63, in zig-zag
	// order. Successive approximation is when not all of the bits of a
	// band of coefficients are transmitted in one pass. For example,
	// three passes could transmit the 6 most significant bits, followed
	// by the second-least significant bit, followed by the least
	// significant bit.
	//
	// For sequential JPEGs, these parameters are hard-coded to 0/63/0/0, as
	// per table B.3.
	zigStart, zigEnd, ah, al := 0, blockSize-1, uint(0), uint(0)
	if d.progressive {
		zigStart = int(tmp[1+2*nComp])
		zigEnd = int(tmp[2+2*nComp])
		ah = uint(tmp[3+2*nComp] >> 4)
		al = uint(tmp[3+2*nComp] & 0x0f)
		if (zigStart == 0 && zigEnd != 0) || zigStart > zigEnd || blockSize <= zigEnd {
			return formatError("bad spectral selection bounds")
		}
		if zigStart != 0 && nComp != 1 {
			return formatError("progressive AC coefficients for more than one component")
		}
		if ah != 0 && ah != al+1 {
			return formatError("bad successive approximation values")
		}
	}
	sc.zigStart, sc.zigEnd, sc.ah, sc.al = zigStart, zigEnd, ah, al

	// mxx and myy are the number of MCUs (Minimum Coded Units) in the image.
	h0, v0 := d.comp[0].h, d.comp[0].v // The h and v values from the Y components.
	mxx := (d.width + 8*h0 - 1) / (8 * h0)
	myy := (d.height + 8*v0 - 1) / (8 * v0)

	// bw and bh are the size in blocks of a non-interleaved scan.
	bw, bh := 0, 0
	if nComp == 1 {
		var quirk bool
		bw, bh, quirk = d.scanLayout(sc.comps[0].compIndex, mxx, myy)
		d.quirk = d.quirk || quirk
	}

	if d.img1 == nil && d.img3 == nil {
		// Before allocating the image, check that the file can hold this
		// scan: every block of a scan with DC coefficients takes at least
		// one bit (its DC code, or its DC refinement bit).
		if zigStart == 0 {
			blocks := bw * bh
			if nComp != 1 {
				blocks = mxx * myy * totalHV
			}
			if (len(d.src)-d.pos)*8 < blocks {
				return errShortData
			}
		}
		d.makeImg(mxx, myy)
	}

	for i := 0; i < nComp; i++ {
		c := &sc.comps[i]
		comp := &d.comp[c.compIndex]
		c.h, c.v = comp.h, comp.v
		c.dc = &d.huff[dcTable][td[i]]
		c.ac = &d.huff[acTable][ta[i]]
		c.q = &d.quant[comp.tq]
		if d.progressive {
			if d.progCoeffs[c.compIndex] == nil {
				if d.progKeep == 0 {
					d.initProgKeep()
				}
				blocks := mxx * myy * comp.h * comp.v
				d.progCoeffs[c.compIndex] = make([]int16, d.progKeep*blocks)
				d.progMasks[c.compIndex] = make([]uint64, blocks)
			}
			c.coef = d.progCoeffs[c.compIndex]
			c.mask = d.progMasks[c.compIndex]
			c.cstride = mxx * comp.h
		} else {
			c.pix, c.stride = d.plane(c.compIndex)
		}
	}

	var blockFn func(c *scanComp, bx, by int) error
	switch {
	case !d.progressive && d.shift == 3:
		blockFn = d.seqBlockDC
	case !d.progressive:
		blockFn = d.seqBlock
	case zigStart == 0 && ah == 0:
		blockFn = d.progDCFirst
	case zigStart == 0:
		blockFn = d.progDCRefine
	case ah == 0:
		blockFn = d.progACFirst
	default:
		blockFn = d.progACRefine
	}
	d.scan = &sc
	defer func() { d.scan = nil }()

	d.resetBits()
	mcu, expectedRST := 0, uint8(rst0Marker)
	if nComp == 1 {
		// A non-interleaved scan: the MCU is one block, and the blocks are
		// traversed left to right, top to bottom. There is no data for the
		// blocks that are inside the image at the MCU level but outside the
		// image at the pixel level: for example, a 24x16 pixel 4:2:0 image
		// consists of two 16x16 MCUs, and an interleaved scan processes 8 Y
		// blocks:
		//	0 1 4 5
		//	2 3 6 7
		// while a non-interleaved scan processes only 6 Y blocks:
		//	0 1 2
		//	3 4 5
		c := &sc.comps[0]
		for by := 0; by < bh; by++ {
			for bx := 0; bx < bw; bx++ {
				if err := blockFn(c, bx, by); err != nil {
					return d.blockError(err)
				}
				mcu++
				if d.ri > 0 && mcu%d.ri == 0 && mcu < bw*bh {
					if err := d.restart(&sc, &expectedRST); err != nil {
						return err
					}
				}
			}
		}
	} else {
		// An interleaved scan: the blocks are traversed one MCU at a time.
		// For 4:2:0 chroma subsampling, there are four Y 8x8 blocks in every
		// 16x16 MCU. For a sequential 32x16 pixel image, the Y blocks
		// visiting order is:
		//	0 1 4 5
		//	2 3 6 7
		for my := 0; my < myy; my++ {
			for mx := 0; mx < mxx; mx++ {
				for i := 0; i < nComp; i++ {
					c := &sc.comps[i]
					hi, vi := c.h, c.v
					for j := 0; j < hi*vi; j++ {
						if err := blockFn(c, hi*mx+j%hi, vi*my+j/hi); err != nil {
							return d.blockError(err)
						}
					}
				}
				mcu++
				if d.ri > 0 && mcu%d.ri == 0 && mcu < mxx*myy {
					if err := d.restart(&sc, &expectedRST); err != nil {
						return err
					}
				}
			}
		}
	}
	d.resetBits()
	if al == 0 {
		band := uint64(1)<<(zigEnd+1) - uint64(1)<<zigStart
		for i := 0; i < nComp; i++ {
			d.coded[sc.comps[i].compIndex] |= band
		}
	}
	return nil
}

// blockError returns the error to report for err, met while decoding a
// block: if the block's bits ran past the end of the entropy-coded data, the
// error is that (as image/jpeg reports it as soon as it reads past the end),
// not what the decoding of the padding bits found.
func (d *decoder) blockError(err error) error {
	if d.nBits < d.nPad {
		return d.overrun()
	}
	return err
}

// scanLayout returns the size in blocks of a non-interleaved scan of
// component compIndex, as section A.2 defines it: the component's samples
// cover ceil(width*h/hmax) x ceil(height*v/vmax) pixels. It also reports
// whether image/jpeg reads such a scan differently: it visits the component's
// blocks of the MCU grid whose top-left corner is inside the full-size image
// (in units of 8 luma pixels, whatever the sampling factors), and counts the
// restart interval in groups of h*v blocks. Both readings agree for the usual
// sampling factors and no restart interval.
func (d *decoder) scanLayout(compIndex, mxx, myy int) (bw, bh int, quirk bool) {
	comp := &d.comp[compIndex]
	h0, v0 := d.comp[0].h, d.comp[0].v
	bw = ((d.width*comp.h+h0-1)/h0 + 7) / 8
	bh = ((d.height*comp.v+v0-1)/v0 + 7) / 8
	jw := min(mxx*comp.h, (d.width+7)/8)
	jh := min(myy*comp.v, (d.height+7)/8)
	quirk = bw != jw || bh != jh || (d.ri > 0 && comp.h*comp.v > 1)
	return bw, bh, quirk
}

// restart processes a restart marker (section F.1.2.3, G.1.2.2).
func (d *decoder) restart(sc *scan, expectedRST *uint8) error {
	// The bits left before the marker are padding.
	d.resetBits()
	// For well-formed input, the RST[0-7] restart marker follows
	// immediately. For corrupt input, call findRST to try to
	// resynchronize.
	tmp, err := d.readFull(2)
	if err != nil {
		return err
	}
	if tmp[0] != 0xff || tmp[1] != *expectedRST {
		if err := d.findRST(tmp[0], tmp[1], *expectedRST); err != nil {
			return err
		}
	}
	*expectedRST++
	if *expectedRST == rst7Marker+1 {
		*expectedRST = rst0Marker
	}
	// Reset the DC components, as per section F.2.1.3.1.
	for i := range sc.comps {
		sc.comps[i].pred = 0
	}
	// Reset the progressive decoder state, as per section G.1.2.2.
	d.eobRun = 0
	return nil
}

// findRST advances past the next RST restart marker that matches expectedRST.
// Other than I/O errors, it is also an error if we encounter an {0xFF, M}
// two-byte marker sequence where M is not 0x00, 0xFF or the expectedRST.
//
// This is similar to libjpeg's jdmarker.c's next_marker function.
// https://github.com/libjpeg-turbo/libjpeg-turbo/blob/2dfe6c0fe9e18671105e94f7cbf044d4a1d157e6/jdmarker.c#L892-L935
//
// Precondition: t0, t1 are the next two bytes of JPEG-encoded input, just
// read.
func (d *decoder) findRST(t0, t1, expectedRST uint8) error {
	for {
		if t0 == 0xff {
			if t1 == expectedRST {
				return nil
			} else if t1 == 0xff {
				// Read one byte: t0 stays 0xff.
				b, err := d.readByte()
				if err != nil {
					return err
				}
				t1 = b
				continue
			} else if t1 != 0x00 {
				// libjpeg's jdmarker.c's jpeg_resync_to_restart does something
				// fancy here, treating RST markers within two (modulo 8) of
				// expectedRST differently from RST markers that are 'more
				// distant'. Until we see evidence that recovering from such
				// cases is frequent enough to be worth the complexity, we take
				// a simpler approach for now. Any marker that's not 0x00, 0xff
				// or expectedRST is a fatal FormatError.
				return formatError("bad RST marker")
			}
		} else if t1 == 0xff {
			b, err := d.readByte()
			if err != nil {
				return err
			}
			t0, t1 = 0xff, b
			continue
		}
		tmp, err := d.readFull(2)
		if err != nil {
			return err
		}
		t0, t1 = tmp[0], tmp[1]
	}
}

// seqBlock decodes a block of a sequential scan and reconstructs its pixels.
func (d *decoder) seqBlock(c *scanComp, bx, by int) error {
	b := &d.blk
	nz, err := d.decodeBlock(b, c)
	if err != nil {
		return err
	}
	bs := 8 >> d.shift
	d.reconstruct(b, nz, c.pix[bs*(by*c.stride+bx):], c.stride)
	return nil
}

// seqBlockDC decodes a block of a sequential scan at 1/8 scale, where only
// its DC coefficient matters.
func (d *decoder) seqBlockDC(c *scanComp, bx, by int) error {
	dc, err := d.decodeBlockDC(c)
	if err != nil {
		return err
	}
	c.pix[by*c.stride+bx] = idct1(dc)
	return nil
}

// initProgKeep chooses the coefficients of a progressive image to keep for
// the scale: the scaled inverse DCTs do not read row 4 and column 4 (at 1/2),
// rows and columns 2, 4 and 6 as well (at 1/4), or any AC coefficient (at
// 1/8).
func (d *decoder) initProgKeep() {
	d.progKeep = 0
	for zig := 0; zig < blockSize; zig++ {
		u, v := int(unzig[zig])%8, int(unzig[zig])/8
		var keep bool
		switch d.shift {
		case 0:
			keep = true
		case 1:
			keep = u != 4 && v != 4
		case 2:
			keep = (u == 0 || u%2 == 1) && (v == 0 || v%2 == 1)
		case 3:
			keep = zig == 0
		}
		d.progSlot[zig] = -1
		if keep {
			d.progSlot[zig] = int8(d.progKeep)
			d.progKeep++
			if zig > 0 {
				d.progKeptAC |= 1 << uint(zig)
			}
		}
	}
}

// block returns the index of block (bx, by) of c.
func (c *scanComp) block(bx, by int) int { return by*c.cstride + bx }

// errCoefficientRange means that a progressive coefficient does not fit in
// 16 bits, which no 8-bit JPEG needs; image/jpeg keeps 32 bits.
var errCoefficientRange = unsupportedError("coefficient out of 16-bit range")

// put16 stores v in *p if it fits.
func put16(p *int16, v int32) error {
	if v != int32(int16(v)) {
		return errCoefficientRange
	}
	*p = int16(v)
	return nil
}

// setAC records the value v of the AC coefficient zig of block blk of c.
// The value itself is kept only if the scale needs it.
func (d *decoder) setAC(c *scanComp, blk, zig int, v int32) error {
	c.mask[blk] |= 1 << uint(zig&63)
	if s := d.progSlot[zig&63]; s >= 0 {
		return put16(&c.coef[blk*d.progKeep+int(s)], v)
	}
	return nil
}

// progDCFirst decodes the first DC scan of a block (section G.1.2.1).
func (d *decoder) progDCFirst(c *scanComp, bx, by int) error {
	diff, err := d.decodeDC(c.dc)
	if err != nil {
		return err
	}
	c.pred += diff
	if err := put16(&c.coef[c.block(bx, by)*d.progKeep], c.pred<<d.scan.al); err != nil {
		return err
	}
	return d.checkOverrun()
}

// progDCRefine decodes a DC successive approximation bit (section G.1.2.1).
func (d *decoder) progDCRefine(c *scanComp, bx, by int) error {
	if d.getBits(1) != 0 {
		p := &c.coef[c.block(bx, by)*d.progKeep]
		if err := put16(p, int32(*p)|1<<d.scan.al); err != nil {
			return err
		}
	}
	return d.checkOverrun()
}

// progACFirst decodes the first scan of a band of AC coefficients (section
// G.1.2.2).
func (d *decoder) progACFirst(c *scanComp, bx, by int) error {
	if d.eobRun > 0 {
		d.eobRun--
		return nil
	}
	blk := c.block(bx, by)
	h := c.ac
	al := d.scan.al
	zigEnd := d.scan.zigEnd
	for zig := d.scan.zigStart; zig <= zigEnd; zig++ {
		value, err := d.decodeHuffman(h)
		if err != nil {
			return err
		}
		val0 := value >> 4
		val1 := value & 0x0f
		if val1 != 0 {
			zig += int(val0)
			if zig > zigEnd {
				break
			}
			ac := d.receiveExtend(uint(val1))
			if err := d.setAC(c, blk, zig, ac<<al); err != nil {
				return err
			}
		} else {
			if val0 != 0x0f {
				d.eobRun = uint16(1) << val0
				if val0 != 0 {
					d.eobRun |= uint16(d.getBits(uint(val0)))
				}
				d.eobRun--
				break
			}
			zig += 0x0f
		}
	}
	return d.checkOverrun()
}

// progACRefine decodes a successive approximation refinement of a band of
// AC coefficients, as specified in sections G.1.2.2 and G.1.2.3.
func (d *decoder) progACRefine(c *scanComp, bx, by int) error {
	blk := c.block(bx, by)
	zigEnd := d.scan.zigEnd
	delta := int32(1) << d.scan.al
	zig := d.scan.zigStart
	if d.eobRun == 0 {
	loop:
		for ; zig <= zigEnd; zig++ {
			z := int32(0)
			value, err := d.decodeHuffman(c.ac)
			if err != nil {
				return err
			}
			val0 := value >> 4
			val1 := value & 0x0f

			switch val1 {
			case 0:
				if val0 != 0x0f {
					d.eobRun = uint16(1) << val0
					if val0 != 0 {
						d.eobRun |= uint16(d.getBits(uint(val0)))
					}
					break loop
				}
			case 1:
				z = delta
				if d.getBits(1) == 0 {
					z = -z
				}
			default:
				return formatError("unexpected Huffman code")
			}

			zig, err = d.refineNonZeroes(c, blk, zig, zigEnd, int32(val0), delta)
			if err != nil {
				return err
			}
			if zig > zigEnd {
				return formatError("too many coefficients")
			}
			if z != 0 {
				if err := d.setAC(c, blk, zig, z); err != nil {
					return err
				}
			}
		}
	}
	if d.eobRun > 0 {
		d.eobRun--
		if _, err := d.refineNonZeroes(c, blk, zig, zigEnd, -1, delta); err != nil {
			return err
		}
	}
	return d.checkOverrun()
}

// refineNonZeroes refines the non-zero coefficients of block blk of c from
// zig to zigEnd, in zig-zag order: each reads a correction bit. If nz >= 0,
// the first nz zero entries are skipped over, and it stops at the next zero
// one, whose index it returns.
func (d *decoder) refineNonZeroes(c *scanComp, blk, zig, zigEnd int, nz, delta int32) (int, error) {
	if zig > zigEnd {
		return zig, nil
	}
	mask := c.mask[blk]
	// The bits zig..zigEnd.
	band := ^uint64(0) >> uint(63-zigEnd) &^ (uint64(1)<<uint(zig) - 1)
	end := zigEnd + 1
	if nz >= 0 {
		zeros := ^mask & band
		for ; nz > 0 && zeros != 0; nz-- {
			zeros &= zeros - 1
		}
		if zeros != 0 {
			end = bits.TrailingZeros64(zeros)
		}
	}
	refine := mask & band &^ (^uint64(0) << uint(end)) // the bits zig..end-1 of mask
	// Read the correction bits, one per coefficient to refine, in order: the
	// first in the top bit of corr.
	var corr uint64
	for n, read := uint(bits.OnesCount64(refine)), uint(0); read < n; {
		k := min(n-read, 16)
		corr |= uint64(d.getBits(k)) << (64 - read - k)
		read += k
	}
	refine &= d.progKeptAC // only the values the scale needs
	for refine != 0 {
		k := bits.TrailingZeros64(refine)
		// The correction bit of coefficient k comes after those of the
		// coefficients to refine before it.
		before := bits.OnesCount64(mask & band & (uint64(1)<<uint(k) - 1))
		refine &= refine - 1
		if corr<<uint(before)>>63 == 0 {
			continue
		}
		p := &c.coef[blk*d.progKeep+int(d.progSlot[k])]
		v := int32(*p)
		if v >= 0 {
			v += delta
		} else {
			v -= delta
		}
		if err := put16(p, v); err != nil {
			return 0, err
		}
	}
	return end, nil
}

// reconstructProgressiveImage reconstructs the blocks of a progressive image
// from their accumulated coefficients, once all the scans are decoded.
func (d *decoder) reconstructProgressiveImage() {
	// The h0, mxx, by and bx variables have the same meaning as in the
	// processSOS method.
	h0 := d.comp[0].h
	mxx := (d.width + 8*h0 - 1) / (8 * h0)
	bs := 8 >> d.shift
	for i := 0; i < d.nComp; i++ {
		coef := d.progCoeffs[i]
		if coef == nil {
			continue
		}
		keep := d.progKeep
		mask := d.progMasks[i]
		pix, pstride := d.plane(i)
		q := &d.quant[d.comp[i].tq]
		v := 8 * d.comp[0].v / d.comp[i].v
		h := 8 * d.comp[0].h / d.comp[i].h
		stride := mxx * d.comp[i].h
		for by := 0; by*v < d.height; by++ {
			for bx := 0; bx*h < d.width; bx++ {
				k := keep * (by*stride + bx)
				c := coef[k : k+keep : k+keep]
				if d.shift == 3 {
					pix[by*pstride+bx] = idct1(int32(c[0]) * q[0])
					continue
				}
				b := &d.blk
				b[0] = int32(c[0]) * q[0]
				// The mask tells which AC coefficients are non-zero.
				nz := mask[k/keep] != 0
				for m := mask[k/keep] & d.progKeptAC; m != 0; m &= m - 1 {
					zig := bits.TrailingZeros64(m)
					b[unzig[zig]] = int32(c[d.progSlot[zig]]) * q[zig]
				}
				d.reconstruct(b, nz, pix[bs*(by*pstride+bx):], pstride)
			}
		}
	}
}

// reconstruct performs the (scaled) inverse DCT of the dequantized block b
// and stores its pixels to dst. nz reports whether b has non-zero AC
// coefficients. It leaves b zeroed.
func (d *decoder) reconstruct(b *block, nz bool, dst []byte, stride int) {
	if !nz {
		// Only the DC coefficient: a flat block.
		var c uint8
		if d.shift == 0 {
			c = idctDC(b[0])
		} else {
			c = idct1(b[0])
		}
		b[0] = 0
		bs := 8 >> d.shift
		for y := 0; y < bs; y++ {
			row := dst[y*stride : y*stride+bs]
			for x := range row {
				row[x] = c
			}
		}
		return
	}
	switch d.shift {
	case 0:
		idct(b)
		store8x8(b, dst, stride)
	case 1:
		idct4x4(b, dst, stride)
	case 2:
		idct2x2(b, dst, stride)
	}
	*b = block{}
}
