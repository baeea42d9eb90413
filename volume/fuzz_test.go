package volume

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"testing"
)

func FuzzDecodeSuperblock(f *testing.F) {
	for _, opts := range []FormatOptions{
		smallOpts(),
		mediumOpts(),
		{Geometry: Geometry{SpageShift: 20, LpageShift: 30, VolumeSize: 1 << 40}, StateSize: 12345},
	} {
		l, err := ComputeLayout(opts)
		if err != nil {
			f.Fatal(err)
		}
		b := EncodeSuperblock(Superblock{Version: FormatVersion, UUID: opts.UUID, Geometry: opts.Geometry, Layout: l})
		f.Add(b[:superEncoded])
		mut := bytes.Clone(b[:superEncoded])
		mut[37]++
		f.Add(reseal(mut))
		mut = bytes.Clone(b[:superEncoded])
		binary.LittleEndian.PutUint64(mut[80:], 1<<63)
		f.Add(reseal(mut))
	}
	f.Add([]byte("BLOBNODE"))
	f.Fuzz(func(t *testing.T, b []byte) {
		sb, err := DecodeSuperblock(b)
		if err != nil {
			return
		}
		if err := checkLayout(sb.Geometry, sb.Layout, sb.Version); err != nil {
			t.Fatalf("decoded an inconsistent layout: %v", err)
		}
		again, err := DecodeSuperblock(EncodeSuperblock(sb))
		if err != nil || again != sb {
			t.Fatalf("round trip: %+v %v, want %+v", again, err, sb)
		}
	})
}

func FuzzJournalRecord(f *testing.F) {
	const tag = 0x1234
	f.Add(testRecord(1, tag))
	f.Add(testRecord(7, tag, recordWrite{100, []byte("hello")}, recordWrite{1 << 40, nil}))
	f.Add(testRecord(1<<63, tag, recordWrite{-1, bytes.Repeat([]byte{0xaa}, 600)}))
	bad := testRecord(2, tag, recordWrite{8, []byte("count")})
	binary.LittleEndian.PutUint32(bad[recordHdrSize:], 2) // count disagrees, CRCs fixed below
	f.Add(resealRecord(bad))
	short := testRecord(3, tag, recordWrite{8, []byte("short")})
	binary.LittleEndian.PutUint32(short[recordHdrSize+4+8:], 1000) // entry longer than the payload
	f.Add(resealRecord(short))
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := decodeRecord(b, tag)
		if err != nil {
			return
		}
		if d.size%recordAlign != 0 || d.size < recordAlign {
			t.Fatalf("record size %d", d.size)
		}
		enc := testRecord(d.seq, tag, d.writes...)
		again, err := decodeRecord(enc, tag)
		if err != nil {
			t.Fatalf("re-encoded record does not decode: %v", err)
		}
		if again.seq != d.seq || again.size != d.size || len(again.writes) != len(d.writes) {
			t.Fatalf("round trip: %+v, want %+v", again, d)
		}
		for i, w := range d.writes {
			if again.writes[i].off != w.off || !bytes.Equal(again.writes[i].data, w.data) {
				t.Fatalf("write %d differs after round trip", i)
			}
		}
		n := recordHdrSize + int(binary.LittleEndian.Uint32(b[12:16]))
		if !bytes.Equal(enc[:n], b[:n]) {
			t.Fatal("the encoding is not canonical: re-encoded record differs")
		}
	})
}

// resealRecord recomputes both CRCs of a record a test has edited.
func resealRecord(rec []byte) []byte {
	le := binary.LittleEndian
	n := le.Uint32(rec[12:16])
	le.PutUint32(rec[16:20], crc32c(rec[recordHdrSize:recordHdrSize+n]))
	le.PutUint32(rec[recordCRCOff:], crc32c(rec[:recordCRCOff]))
	return rec
}

// fuzzJournalImage returns the journal region of a small volume whose log
// holds several records (the volume was not closed cleanly).
func fuzzJournalImage(tb testing.TB) []byte {
	opts := smallOpts()
	dev := NewMemDevice(opts.Geometry.VolumeSize, 1)
	sb, err := Format(dev, opts)
	if err != nil {
		tb.Fatal(err)
	}
	v, err := Open(dev, nil)
	if err != nil {
		tb.Fatal(err)
	}
	l := sb.Layout
	for i := range 5 {
		var txn Txn
		txn.Write(l.StateOffset+int64(i)*300, bytes.Repeat([]byte{byte(i)}, 100+i*150))
		if i%2 == 0 {
			txn.Write(l.StateOffset+int64(i), []byte{byte(i)})
		}
		if err := v.Journal().Commit(context.Background(), &txn); err != nil {
			tb.Fatal(err)
		}
	}
	dev.SetCrashAt(dev.Ops() + 1)
	_ = v.Close()
	dev.Crash(CrashDropAll, nil)
	img := make([]byte, l.JournalSize)
	if err := readFull(dev, img, l.JournalOffset); err != nil {
		tb.Fatal(err)
	}
	return img
}

// FuzzReplay opens a volume whose journal region holds fuzzed bytes: Open
// must return a volume or ErrCorrupt, never panic or hang, and a volume it
// returns must close and reopen cleanly. The first input byte selects how
// the rest is used:
//
//	even: written raw over the journal region from its start;
//	odd:  3-byte patches (offset u16 little-endian modulo the region size,
//	      XOR mask) applied to an image holding several committed records.
//
// Patches keep inputs small, which keeps the fuzzer's minimisation fast, and
// start from a valid log, which reaches the replay paths raw bytes rarely do.
func FuzzReplay(f *testing.F) {
	img := fuzzJournalImage(f)
	patch := func(p ...int) []byte {
		b := []byte{1}
		for i := 0; i+1 < len(p); i += 2 {
			b = binary.LittleEndian.AppendUint16(b, uint16(p[i]))
			b = append(b, byte(p[i+1]))
		}
		return b
	}
	f.Add(patch())
	f.Add(patch(0, 0x10))                                // header slot A magic
	f.Add(patch(regionAlign+4, 1))                       // slot B
	f.Add(patch(logAreaOffset+5, 1))                     // first record's seq
	f.Add(patch(logAreaOffset+40, 0x80))                 // first record's payload
	f.Add(patch(logAreaOffset+512+40, 1))                // second record's payload
	f.Add(patch(logAreaOffset+12, 0x40))                 // a payload length
	f.Add(patch(logAreaOffset+1100, 4, logAreaOffset+9)) // two patches
	f.Add(append([]byte{0}, img[:logAreaOffset+700]...))
	f.Add([]byte{0})
	opts := smallOpts()
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) == 0 {
			return
		}
		var region []byte
		if in[0]&1 == 0 {
			region = in[1:]
		} else {
			region = bytes.Clone(img)
			for p := in[1:]; len(p) >= 3; p = p[3:] {
				region[int(binary.LittleEndian.Uint16(p))%len(region)] ^= p[2]
			}
		}
		dev := NewMemDevice(opts.Geometry.VolumeSize, 1)
		sb, err := Format(dev, opts)
		if err != nil {
			t.Fatal(err)
		}
		if int64(len(region)) > sb.Layout.JournalSize {
			region = region[:sb.Layout.JournalSize]
		}
		if _, err := dev.WriteAt(region, sb.Layout.JournalOffset); err != nil {
			t.Fatal(err)
		}
		v, err := Open(dev, nil)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("open: %v, want a volume or ErrCorrupt", err)
			}
			return
		}
		if err := v.Close(); err != nil {
			t.Fatalf("close: %v", err)
		}
		dev.Reopen()
		v, err = Open(dev, nil)
		if err != nil {
			t.Fatalf("second open: %v", err)
		}
		if n := v.Journal().Stats().Replayed; n != 0 {
			t.Fatalf("second open replayed %d records", n)
		}
		if err := v.Close(); err != nil {
			t.Fatalf("second close: %v", err)
		}
	})
}
