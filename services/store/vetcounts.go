package store

import (
	"context"
	"fmt"
)

// VetRunCount is how many runs the database holds in one state with one
// verdict ("" while a run has none).
type VetRunCount struct {
	State, Verdict string
	Runs           int
}

// CountVetRuns counts the vetting runs kept (retention removes old ones) by
// state and verdict, ordered by both.
func (s *Store) CountVetRuns(ctx context.Context) ([]VetRunCount, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT state, verdict, COUNT(*) FROM vet_runs GROUP BY state, verdict ORDER BY state, verdict`)
	if err != nil {
		return nil, fmt.Errorf("counting vetting runs: %w", err)
	}
	defer rows.Close()
	var out []VetRunCount
	for rows.Next() {
		var c VetRunCount
		if err := rows.Scan(&c.State, &c.Verdict, &c.Runs); err != nil {
			return nil, fmt.Errorf("counting vetting runs: %w", err)
		}
		out = append(out, c)
	}
	return out, rows.Err()
}
