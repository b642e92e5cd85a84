package jpegscale

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/matryer/is"
)

func TestScaledIDCTConstants(t *testing.T) {
	c, s, pi := math.Cos, math.Sin, math.Pi
	for _, tc := range []struct {
		name  string
		fixed int
		exact float64
	}{
		{"K0", fixK0, 1 / math.Sqrt2},
		{"K2", fixK2, c(pi/8) / math.Sqrt2},
		{"K6", fixK6, s(pi/8) / math.Sqrt2},
		{"A1", fixA1, c(pi/16) * c(pi/8)},
		{"A7", fixA7, s(pi/16) * c(pi/8)},
		{"A3", fixA3, c(3*pi/16) * c(3*pi/8)},
		{"A5", fixA5, s(3*pi/16) * c(3*pi/8)},
		{"B1", fixB1, c(pi/16) * c(3*pi/8)},
		{"B7", fixB7, s(pi/16) * c(3*pi/8)},
		{"B3", fixB3, c(3*pi/16) * c(pi/8)},
		{"B5", fixB5, s(3*pi/16) * c(pi/8)},
		{"W1", fixW1, 1 / (8 * s(pi/16))},
		{"W3", fixW3, 1 / (8 * s(3*pi/16))},
		{"W5", fixW5, 1 / (8 * s(5*pi/16))},
		{"W7", fixW7, 1 / (8 * s(7*pi/16))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			is.New(t).Equal(tc.fixed, int(math.Round(tc.exact*(1<<scaledBits))))
		})
	}
}

// fullIDCT is the inverse DCT by its definition (section A.3.3), without the
// level shift.
func fullIDCT(b *block) (px [64]float64) {
	for y := 0; y < 8; y++ {
		for x := 0; x < 8; x++ {
			var sum float64
			for v := 0; v < 8; v++ {
				for u := 0; u < 8; u++ {
					cu, cv := 1.0, 1.0
					if u == 0 {
						cu = 1 / math.Sqrt2
					}
					if v == 0 {
						cv = 1 / math.Sqrt2
					}
					sum += cu * cv * float64(b[8*v+u]) * dctCos[x][u] * dctCos[y][v]
				}
			}
			px[8*y+x] = sum / 4
		}
	}
	return px
}

// randomBlock returns dequantized coefficients like a photo's: large low
// frequencies, smaller and sparser high ones, sometimes only a DC term or
// values that overflow the pixel range.
func randomBlock(r *rand.Rand) *block {
	var b block
	b[0] = int32(r.IntN(2048) - 1024)
	if r.IntN(4) == 0 {
		return &b
	}
	for i := 1; i < 64; i++ {
		u, v := i%8, i/8
		if r.IntN(1+u+v) == 0 {
			scale := 600 / (1 + u + v)
			b[i] = int32(r.IntN(2*scale+1) - scale)
		}
	}
	return &b
}

// TestScaledIDCTIsTheAverage: the pixels at 1/2, 1/4 and 1/8 scale are the
// averages of the full-size pixels of the block (before clamping), rounded.
func TestScaledIDCTIsTheAverage(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, denom := range []int{2, 4, 8} {
		t.Run(fmt.Sprintf("1/%d", denom), func(t *testing.T) {
			is := is.New(t)
			bs := 8 / denom
			off := 0
			blocks := 20000
			if raceEnabled {
				blocks = 2000
			}
			for n := 0; n < blocks; n++ {
				b := randomBlock(r)
				full := fullIDCT(b)
				var dst [4 * 4]uint8
				switch denom {
				case 2:
					idct4x4(b, dst[:], 4)
				case 4:
					idct2x2(b, dst[:], 4)
				case 8:
					dst[0] = idct1(b[0])
				}
				for y := 0; y < bs; y++ {
					for x := 0; x < bs; x++ {
						var sum float64
						for j := 0; j < denom; j++ {
							for i := 0; i < denom; i++ {
								sum += full[8*(y*denom+j)+x*denom+i]
							}
						}
						ideal := sum/float64(denom*denom) + 128
						got := float64(dst[4*y+x])
						if ideal < 0 || ideal > 255 {
							is.Equal(got, max(0, min(255, math.Round(ideal)))) // clamped
							continue
						}
						e := math.Abs(got - ideal)
						is.True(e < 1) // rounding of the fixed-point arithmetic
						if e > 0.5+1e-9 {
							off++ // not the nearest integer
						}
					}
				}
			}
			t.Logf("%d of %d pixels not rounded to the nearest", off, blocks*bs*bs)
			is.True(off < blocks*bs*bs/100) // and rarely that
		})
	}
}

// TestIDCTDC: the flat-block shortcut gives what idct gives, for any DC
// value (even ones no valid file has, which overflow).
func TestIDCTDC(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	values := []int32{0, 1, -1, 4, -4, 5, -5, 1023, -1024, 1024, -1025, 2047 * 255, 1 << 14, -1 << 14, math.MaxInt32, math.MinInt32}
	for range 1000 {
		values = append(values, int32(r.Uint32()))
	}
	for _, dc := range values {
		var b block
		b[0] = dc
		idct(&b)
		for i := range b {
			if got, want := idctDC(dc), clampIDCT(b[i]); got != want {
				t.Fatalf("dc %d: pixel %d is %d, want %d", dc, i, got, want)
			}
		}
	}
}

// TestScaledIDCTLeavesBlock: idct4x4 and idct2x2 read the block without
// changing it (reconstruct clears it afterwards).
func TestScaledIDCTLeavesBlock(t *testing.T) {
	is := is.New(t)
	b := randomBlock(rand.New(rand.NewPCG(5, 6)))
	b[9] = 77
	saved := *b
	var dst [16]uint8
	idct4x4(b, dst[:], 4)
	idct2x2(b, dst[:], 4)
	is.Equal(*b, saved)
}

// TestIDCTMatchesImageJPEG: idct, with its shortcuts, and store8x8 give
// exactly what image/jpeg's inverse DCT and clamping give, for blocks like a
// photo's and for any int32 coefficients.
func TestIDCTMatchesImageJPEG(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	for n := 0; n < 100000; n++ {
		var b *block
		switch n % 4 {
		case 0, 1:
			b = randomBlock(r)
		case 2: // sparse, with zero rows and columns
			b = new(block)
			for range 1 + r.IntN(4) {
				b[r.IntN(64)] = int32(r.IntN(4001) - 2000)
			}
		case 3: // garbage
			b = new(block)
			for i := range b {
				if r.IntN(3) == 0 {
					b[i] = int32(r.Uint32())
				}
			}
		}
		want, got := *b, *b
		refIDCT(&want)
		idct(&got)
		if got != want {
			t.Fatalf("block %v: idct %v, want %v", *b, got, want)
		}
		var dst [64]uint8
		store8x8(&got, dst[:], 8)
		for i, v := range want {
			if dst[i] != clampIDCT(v) {
				t.Fatalf("block %v: pixel %d is %d, want %d", *b, i, dst[i], clampIDCT(v))
			}
		}
	}
}
