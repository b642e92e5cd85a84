package jpegscale

// Scaled inverse DCTs.
//
// A block's full-size pixels are, in one dimension (the 2-D transform is the
// same 1-D transform on the columns, then on the rows),
//
//	x[n] = 1/2 Σ_u C_u F_u cos((2n+1)uπ/16),  n = 0..7, C_0 = 1/√2, C_u = 1,
//
// plus the level shift of 128. The pixels at scale 1/2, 1/4 and 1/8 computed
// here are the exact averages of 2, 4 and 8 consecutive full-size pixels
// (before rounding and clamping), which is what a box filter over the
// full-size image gives, so that the result is what decoding at full size and
// shrinking would give, without the ringing or blocking that dropping the
// high frequencies causes. The sums of cosines simplify (this is the maths
// behind libjpeg's jidctred.c; the code here is written from it):
//
// At 1/2, with y[k] = (x[2k] + x[2k+1])/2, using
// cos a + cos b = 2 cos((a+b)/2) cos((a-b)/2):
//
//	y[k] = 1/2 Σ_u C_u F_u cos(uπ/16) cos((2k+1)uπ/8)
//
// and since cos((2k+1)(8-u)π/8) = -cos((2k+1)uπ/8) the terms u and 8-u
// combine: u = 4 drops out, and y is the 4-point inverse DCT
//
//	y[k] = 1/2 (F_0/√2 + Σ_{u=1..3} G_u cos((2k+1)uπ/8))
//	G_u  = F_u cos(uπ/16) - F_{8-u} sin(uπ/16)
//
// At 1/4, with y[k] the average of x[4k..4k+3], the sum of four cosines in
// arithmetic progression gives
//
//	y[k] = 1/2 (F_0/√2 + Σ_{u odd} F_u cos((2k+1)uπ/4) sin(uπ/4) / (4 sin(uπ/16)))
//
// the even terms vanishing, and cos((2k+1)uπ/4) sin(uπ/4) = ±1/2, so that
//
//	y[0] = 1/2 (F_0/√2 + O),  y[1] = 1/2 (F_0/√2 - O)
//	O    = F_1/(8 sin(π/16)) - F_3/(8 sin(3π/16)) + F_5/(8 sin(5π/16)) - F_7/(8 sin(7π/16))
//
// At 1/8 the average is the DC term alone: y = F_0/(2√2), or F_0/8 in 2-D.
//
// The arithmetic is done in 64 bits with 16-bit fixed-point constants and no
// rounding between the two passes; both passes leave out their factor 1/2,
// which the final shift puts back.

const (
	scaledBits = 16 // fractional bits of the constants

	// 1/2 scale, 1-D: the even part.
	fixK0 = 46341 // 1/√2
	fixK2 = 42813 // cos(π/8)/√2
	fixK6 = 17734 // sin(π/8)/√2
	// 1/2 scale, 1-D: the odd part, o0 = G_1 cos(π/8) + G_3 cos(3π/8) and
	// o1 = G_1 cos(3π/8) - G_3 cos(π/8), with each G_u expanded.
	fixA1 = 59384 // cos(π/16) cos(π/8)
	fixA7 = 11812 // sin(π/16) cos(π/8)
	fixA3 = 20853 // cos(3π/16) cos(3π/8)
	fixA5 = 13933 // sin(3π/16) cos(3π/8)
	fixB1 = 24598 // cos(π/16) cos(3π/8)
	fixB7 = 4893  // sin(π/16) cos(3π/8)
	fixB3 = 50343 // cos(3π/16) cos(π/8)
	fixB5 = 33638 // sin(3π/16) cos(π/8)

	// 1/4 scale, 1-D: 1/(8 sin(uπ/16)).
	fixW1 = 41991
	fixW3 = 14745
	fixW5 = 9852
	fixW7 = 8352

	// The final shift: the constants' scale, twice, and the two factors 1/2.
	scaledShift = 2*scaledBits + 2
	// Added before the final shift: rounding and the level shift.
	scaledBias = 1<<(scaledShift-1) + 128<<scaledShift
)

// clampScaled returns the pixel for v, a 2-D result before the final shift.
func clampScaled(v int) uint8 {
	v = (v + scaledBias) >> scaledShift
	if uint(v) > 255 {
		if v < 0 {
			return 0
		}
		return 255
	}
	return uint8(v)
}

// idct1 returns the pixel of a block at 1/8 scale, from its dequantized DC
// coefficient: the average of the full-size pixels, F_0/8 + 128.
func idct1(dc int32) uint8 {
	v := (int(dc) + 4 + 128*8) >> 3
	if uint(v) > 255 {
		if v < 0 {
			return 0
		}
		return 255
	}
	return uint8(v)
}

// idctDC returns the pixel value of a full-size block whose AC coefficients
// are all zero, exactly as idct and store8x8 compute it (with the same int32
// arithmetic): every stage of idct passes the DC term through unchanged
// except for the shifts.
func idctDC(dc int32) uint8 {
	x := dc << 17    // idctRows: x0 <<= 17
	x += 1 << 19     // idctCols: x0 += 1 << 19
	x = x >> 2 >> 18 // idctCols: (x0+x1)>>2, then >> 18
	return clampIDCT(x)
}

// clampIDCT level-shifts by +128 and clips to [0, 255], as image/jpeg does.
func clampIDCT(c int32) uint8 {
	if c < -128 {
		return 0
	} else if c > 127 {
		return 255
	}
	return uint8(c + 128)
}

// store8x8 stores the pixels of b, transformed by idct, to dst, as
// clampIDCT does. (The outputs of idct are within ±1<<13, so adding 128 does
// not overflow.)
func store8x8(b *block, dst []byte, stride int) {
	for y := 0; y < 8; y++ {
		row := dst[y*stride : y*stride+8 : y*stride+8]
		src := b[8*y : 8*y+8 : 8*y+8]
		for x := range row {
			v := src[x] + 128
			if uint32(v) > 255 {
				v = ^(v >> 31) // 0 if v < 0, else -1 (255 as a byte)
			}
			row[x] = uint8(v)
		}
	}
}

// idct4x4 stores the 4x4 pixels of the dequantized block b at 1/2 scale to
// dst. b is left unchanged.
func idct4x4(b *block, dst []byte, stride int) {
	// t[8*k+u] is row k of the 1-D transform of column u. Column 4 has no
	// effect on the result (G_4 does not exist), so it is left out.
	var t [4 * 8]int
	for u := 0; u < 8; u++ {
		if u == 4 {
			continue
		}
		f0, f1, f2, f3 := int(b[u]), int(b[8+u]), int(b[16+u]), int(b[24+u])
		f5, f6, f7 := int(b[40+u]), int(b[48+u]), int(b[56+u])
		if f1|f2|f3|f5|f6|f7 == 0 {
			a := f0 * fixK0
			t[u], t[8+u], t[16+u], t[24+u] = a, a, a, a
			continue
		}
		y0, y1, y2, y3 := idct4(f0, f1, f2, f3, f5, f6, f7)
		t[u], t[8+u], t[16+u], t[24+u] = y0, y1, y2, y3
	}
	for k := 0; k < 4; k++ {
		r := t[8*k : 8*k+8 : 8*k+8]
		y0, y1, y2, y3 := idct4(r[0], r[1], r[2], r[3], r[5], r[6], r[7])
		row := dst[k*stride : k*stride+4 : k*stride+4]
		row[0] = clampScaled(y0)
		row[1] = clampScaled(y1)
		row[2] = clampScaled(y2)
		row[3] = clampScaled(y3)
	}
}

// idct4 is the 1-D transform for 1/2 scale, without its factor 1/2: the 4
// outputs from the inputs F_0..F_7 but F_4, scaled by 1<<scaledBits.
func idct4(f0, f1, f2, f3, f5, f6, f7 int) (y0, y1, y2, y3 int) {
	a := f0 * fixK0
	e := f2*fixK2 - f6*fixK6
	o0 := f1*fixA1 - f7*fixA7 + f3*fixA3 - f5*fixA5
	o1 := f1*fixB1 - f7*fixB7 - f3*fixB3 + f5*fixB5
	return a + e + o0, a - e + o1, a - e - o1, a + e - o0
}

// idct2x2 stores the 2x2 pixels of the dequantized block b at 1/4 scale to
// dst. b is left unchanged.
func idct2x2(b *block, dst []byte, stride int) {
	// Rows 2, 4 and 6 and columns 2, 4 and 6 have no effect on the result.
	var t0, t1 [8]int // rows 0 and 1 of the transform of the columns
	for _, u := range [...]int{0, 1, 3, 5, 7} {
		a := int(b[u]) * fixK0
		o := int(b[8+u])*fixW1 - int(b[24+u])*fixW3 + int(b[40+u])*fixW5 - int(b[56+u])*fixW7
		t0[u], t1[u] = a+o, a-o
	}
	for k, r := range [2]*[8]int{&t0, &t1} {
		a := r[0] * fixK0
		o := r[1]*fixW1 - r[3]*fixW3 + r[5]*fixW5 - r[7]*fixW7
		row := dst[k*stride : k*stride+2 : k*stride+2]
		row[0] = clampScaled(a + o)
		row[1] = clampScaled(a - o)
	}
}
