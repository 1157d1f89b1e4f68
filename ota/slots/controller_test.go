package slots

import "kiln.dev/kiln/init/console"

// The recovery console takes the Controller as its slot controller; the
// check lives in a test so that ota/ does not import init/ (internal/layering).
var _ console.SlotController = (*Controller)(nil)
