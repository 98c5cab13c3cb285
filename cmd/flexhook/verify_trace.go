package main

// What check 8 compares: the commands a dry-run printed and the ones a
// node's trace logged.

import "strings"

// dryRunBlock returns the command lines after header in dry-run output.
func dryRunBlock(out, header string) []string {
	var lines []string
	in := false
	for _, l := range strings.Split(out, "\n") {
		switch {
		case strings.HasPrefix(l, "# exit status "): // a command's status, inside the block
		case strings.HasPrefix(l, "# "):
			in = l == header
		case in && strings.HasPrefix(l, "+ "):
			lines = append(lines, strings.TrimSuffix(l, "  # skipped"))
		}
	}
	return lines
}

// addBlock returns the commands of the first SubnetAddCommand traced for
// subnet in a node's log whose commands carry data (any, when data is
// empty), without the replace-existing retries (an add's twin replace).
// When no run's commands name data (a hook that routes without it, as
// vxlan-prod's direct route), it is the last run's.
func addBlock(log, subnet, data string) []string {
	var cur, last []string
	for _, line := range strings.Split(log, "\n") {
		hook, _ := logField(line, "hook")
		sub, _ := logField(line, "subnet")
		if hook != "SubnetAddCommand" || sub != subnet {
			continue
		}
		msg, _ := logField(line, "msg")
		switch {
		case strings.HasPrefix(msg, "+ "):
			if n := len(cur); n > 0 && strings.Replace(cur[n-1], " add ", " replace ", 1) == msg {
				continue
			}
			cur = append(cur, msg)
		case msg == "hook applied" || strings.HasPrefix(msg, "hook failed"):
			if len(cur) > 0 && (data == "" || strings.Contains(strings.Join(cur, "\n"), data)) {
				return cur
			}
			if len(cur) > 0 {
				last = cur
			}
			cur = nil
		}
	}
	return last
}
