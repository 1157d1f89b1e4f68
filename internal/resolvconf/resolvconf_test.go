package resolvconf

import "testing"

func TestRender(t *testing.T) {
	tests := []struct {
		servers, search []string
		want            string
	}{
		{nil, nil, "# by x\n"},
		{[]string{"10.0.0.1", "10.0.0.2", "10.0.0.1", "10.0.0.3", "10.0.0.4"}, []string{"lab", "example", "lab"},
			"# by x\nsearch lab example\nnameserver 10.0.0.1\nnameserver 10.0.0.2\nnameserver 10.0.0.3\n"},
		{[]string{"::1"}, nil, "# by x\nnameserver ::1\n"},
	}
	for _, tt := range tests {
		if got := Render("by x", tt.servers, tt.search); got != tt.want {
			t.Errorf("Render(%q, %q) = %q, want %q", tt.servers, tt.search, got, tt.want)
		}
	}
}
