package dash

import "strings"

// WithCommand returns a console that answers the lines whose first word is
// verb (any case) with f, and hands every other line to c: the demo's
// "amisim kill gw1" beside the queue manager's commands. f's answer (or
// its error, as "error: …") goes to sink line by line.
func WithCommand(c *Console, verb string, f func(args string) (string, error), sink func(ConsoleMsg)) *Console {
	return &Console{
		exec: func(line string) {
			first, rest, _ := strings.Cut(strings.TrimSpace(line), " ")
			if !strings.EqualFold(first, verb) {
				c.exec(line)
				return
			}
			out, err := f(strings.TrimSpace(rest))
			if err != nil {
				sink(ConsoleMsg{Lines: []string{"error: " + err.Error()}, Err: true})
				return
			}
			sink(ConsoleMsg{Lines: strings.Split(strings.TrimRight(out, "\n"), "\n")})
		},
		close: c.close,
		done:  c.done,
	}
}
