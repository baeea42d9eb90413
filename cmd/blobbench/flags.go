package main

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// byteSize is a flag.Value for a byte count written as a number with an
// optional unit: B, K/KiB, M/MiB, G/GiB (powers of 1024) or KB, MB, GB
// (powers of 1000), case-insensitive, e.g. "1024", "1KiB", "4mib".
type byteSize int64

var sizeUnits = []struct {
	suffix string
	mult   int64
}{
	// Longest suffixes first, so "KiB" is not read as "B".
	{"kib", 1 << 10}, {"mib", 1 << 20}, {"gib", 1 << 30},
	{"kb", 1e3}, {"mb", 1e6}, {"gb", 1e9},
	{"k", 1 << 10}, {"m", 1 << 20}, {"g", 1 << 30},
	{"b", 1},
}

func parseSize(s string) (int64, error) {
	num := strings.TrimSpace(s)
	mult := int64(1)
	lower := strings.ToLower(num)
	for _, u := range sizeUnits {
		if strings.HasSuffix(lower, u.suffix) {
			num, mult = strings.TrimSpace(num[:len(num)-len(u.suffix)]), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("size %q: want a non-negative integer with an optional unit (B, KiB, MiB, GiB, KB, MB, GB)", s)
	}
	if n > math.MaxInt64/mult {
		return 0, fmt.Errorf("size %q: too large", s)
	}
	return n * mult, nil
}

func (b *byteSize) Set(s string) error {
	n, err := parseSize(s)
	if err != nil {
		return err
	}
	*b = byteSize(n)
	return nil
}

func (b byteSize) String() string { return formatSize(int64(b)) }

// formatSize writes n with the largest binary unit that divides it.
func formatSize(n int64) string {
	switch {
	case n >= 1<<30 && n%(1<<30) == 0:
		return strconv.FormatInt(n>>30, 10) + "GiB"
	case n >= 1<<20 && n%(1<<20) == 0:
		return strconv.FormatInt(n>>20, 10) + "MiB"
	case n >= 1<<10 && n%(1<<10) == 0:
		return strconv.FormatInt(n>>10, 10) + "KiB"
	}
	return strconv.FormatInt(n, 10) + "B"
}

// Op is one kind of phase.
type Op string

const (
	OpPut    Op = "put"
	OpGet    Op = "get"
	OpDelete Op = "delete"
)

// parseOps reads a comma-separated list of phases, run in the order given.
// A phase may repeat ("put,get,get" reads everything twice).
func parseOps(s string) ([]Op, error) {
	var ops []Op
	for f := range strings.SplitSeq(s, ",") {
		switch op := Op(strings.ToLower(strings.TrimSpace(f))); op {
		case OpPut, OpGet, OpDelete:
			ops = append(ops, op)
		default:
			return nil, fmt.Errorf("ops %q: unknown phase %q (want put, get or delete)", s, f)
		}
	}
	if len(ops) == 0 {
		return nil, errors.New("ops: no phase given")
	}
	return ops, nil
}
