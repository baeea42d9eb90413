package volume

import (
	"strings"
	"testing"
)

func TestPlacementText(t *testing.T) {
	opts := mediumOpts()
	dev := NewMemDevice(opts.Geometry.VolumeSize, 1)
	sb, err := Format(dev, opts)
	if err != nil {
		t.Fatal(err)
	}
	p := sb.Placement()
	got, err := ParsePlacement(p.String())
	if err != nil || got.Partial() || got != p {
		t.Fatalf("round trip of %q: %+v %v", p, got, err)
	}
	legacy, err := ParsePlacement(opts.Geometry.String())
	if err != nil || !legacy.Partial() || legacy.Geometry != opts.Geometry {
		t.Fatalf("legacy geometry text: %+v %v", legacy, err)
	}
	if !p.Matches(legacy) || !legacy.Matches(p) {
		t.Fatal("a volume does not match the legacy record of its own geometry")
	}

	// Same geometry text, other layout: each differs where an allocation
	// lands, so none matches.
	v2, err := format(NewMemDevice(opts.Geometry.VolumeSize, 1), opts, 2)
	if err != nil {
		t.Fatal(err)
	}
	bigJournal := opts
	bigJournal.JournalSize = 2 << 20
	bj, err := Format(NewMemDevice(opts.Geometry.VolumeSize, 1), bigJournal)
	if err != nil {
		t.Fatal(err)
	}
	for name, other := range map[string]Placement{"format 2": v2.Placement(), "journal size": bj.Placement()} {
		if other.Geometry != p.Geometry {
			t.Fatalf("%s: geometry differs, the case is not the one under test", name)
		}
		if p.Matches(other) || other.Matches(p) {
			t.Errorf("%s: %v matches %v", name, p, other)
		}
	}

	for _, bad := range []string{
		"", "format=3", "spage=4095 lpage=65536 size=4194304", "spage=4096 lpage=65536",
		strings.Replace(p.String(), "heap=", "heap= ", 1), p.String() + " extra",
		"format=3 spage=4096 lpage=65536 size=4194304 journal=01 heap=1+2",
		"format=0 spage=4096 lpage=65536 size=4194304 journal=1 heap=1+2",
	} {
		if _, err := ParsePlacement(bad); err == nil {
			t.Errorf("ParsePlacement(%q) accepted", bad)
		}
	}
}

func FuzzParsePlacement(f *testing.F) {
	f.Add("format=3 spage=4096 lpage=16777216 size=1073741824 journal=16777216 heap=17838080+1056964608")
	f.Add("spage=4096 lpage=16777216 size=1073741824")
	f.Add("format=1 spage=1 lpage=1 size=-1 journal=0 heap=0+0")
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParsePlacement(s)
		if err != nil || p.Partial() {
			return
		}
		if p.String() != s {
			t.Fatalf("accepted %q, which prints as %q", s, p)
		}
	})
}
