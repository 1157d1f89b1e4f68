// Package scheduler runs kiln's named periodic jobs (retention, backups,
// OTA checks, vetting re-audits) on cron schedules, each staggered by the
// appliance's identity so that a fleet of appliances never runs the same
// job at the same moment, and records every run (start, duration, result,
// what it removed) through a small store interface.
//
// # Schedules
//
// A schedule is a 5-field cron expression (minute hour day-of-month month
// day-of-week, with lists, ranges, steps and names) or one of @hourly,
// @daily (@midnight), @weekly, @monthly, @yearly (@annually). Expressions
// are evaluated in one time zone: UTC unless the config's schedule.zone
// names another. Wall-clock times that do not exist on a day clocks
// spring forward run at the first instant after the gap (once, however
// many of the job's times fall in it); times that occur twice when clocks
// fall back run once, at the first occurrence.
//
// # Stagger
//
// Every job has a window W (default: the smaller of one hour and the
// schedule's spacing). Appliance id and job name give a fixed offset
//
//	offset = SHA-256("kiln/scheduler/" + job + "/" + id)[0:8] as big-endian uint64 mod W (in whole seconds)
//
// and the job runs at each cron time plus offset: the same appliance always
// runs a job at the same moment of its window (no jitter: the time is known
// in advance and shown by the API), and a fleet spreads uniformly over it.
// A run missed while kiln was down is not caught up: the next run comes at
// the next staggered time, so a fleet restarting together does not run at
// once either.
package scheduler
