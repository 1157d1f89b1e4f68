// Package layering holds the tests of kiln's package structure: the one
// table of which parts of the tree may import which (dependencies point down:
// cmd → image, init, ota, services, qemu → leaf helpers), and the rule that
// every package says in one doc comment what it owns.
package layering
