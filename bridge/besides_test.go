package bridge

import (
	"context"
	"errors"
	"testing"
	"time"
)

// TestBesidesOverlaps: the mark and the gates run at once — a mark that
// waits for the gate to have been entered finishes — and a failed mark
// stops a gate still waiting (for a token that would be wasted).
func TestBesidesOverlaps(t *testing.T) {
	ctx := context.Background()
	errMark := errors.New("mark failed")
	for _, tc := range []struct {
		name              string
		markFails         bool
		enterWaits        bool // enter blocks until its ctx ends
		wantMark, wantGen bool // errors expected
	}{
		{name: "both succeed"},
		{name: "gate refuses", wantGen: true},
		{name: "mark fails while the gate waits", markFails: true, enterWaits: true, wantMark: true, wantGen: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			entered := make(chan struct{})
			mark := func(context.Context) error {
				select {
				case <-entered:
				case <-time.After(20 * time.Second):
					return errors.New("the gate was not entered while the mark was on its way")
				}
				if tc.markFails {
					return errMark
				}
				return nil
			}
			enter := func(ctx context.Context) error {
				close(entered)
				if tc.enterWaits {
					<-ctx.Done()
					return ctx.Err()
				}
				if tc.wantGen {
					return errors.New("trunk busy")
				}
				return nil
			}
			done := make(chan struct{})
			var markErr, gateErr error
			go func() { markErr, gateErr = besides(ctx, mark, enter); close(done) }()
			select {
			case <-done:
			case <-time.After(30 * time.Second):
				t.Fatal("besides did not return: a failed mark did not stop the gate's wait")
			}
			if (markErr != nil) != tc.wantMark || (tc.markFails && !errors.Is(markErr, errMark)) {
				t.Errorf("mark error %v, want error %v", markErr, tc.wantMark)
			}
			if (gateErr != nil) != tc.wantGen {
				t.Errorf("gate error %v, want error %v", gateErr, tc.wantGen)
			}
		})
	}
}
