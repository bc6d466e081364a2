// Package snds reads Microsoft's SNDS (Smart Network Data Services)
// automated data access exports and decides what they mean for msgate.
//
// ParseData reads the daily data export (data.aspx: one CSV row per IP and
// day, 14 columns, no header) and ParseIPStatus the IP status export
// (ipStatus.aspx: the ranges Microsoft blocks). A malformed export (wrong
// column count, a bad number or time, an HTML page instead of CSV) is an
// error naming its line and column, never a partial result: the caller
// keeps what it had.
//
// Tolerated: a UTF-8 byte order mark, blank lines, LF or CRLF line ends,
// a last line without its line end, and empty columns after the 14th (a
// trailing comma). A row with fewer than 14 columns, or with a non-empty
// 15th, is rejected: a truncated export or a format Microsoft changed must
// not be read as data. A cut inside the last column (comments) cannot be
// told from a shorter comment.
//
// Assess turns one import into values: whether an IP msgate watches is
// blocked, how many rows are GREEN, YELLOW and RED, the worst complaint
// rate and the rows above the configured threshold. Events compares two
// assessments and names what changed, for alerts; Block.Apply folds an
// SNDS block into the delivery state Microsoft's replies keep
// (policy/replies), so that either source blocks.
//
// GreenDays and RampDay decide the mitigation ramp's pace when only GREEN
// days may advance it: a day is GREEN when every watched row of it is, and
// the ramp day is 1 plus the GREEN days since the ramp started.
//
// It decides only: time is passed in, and fetching, keeping the import,
// showing it and acting on a block are left to the caller.
//
// SNDS writes its times as "M/D/YYYY h:mm AM/PM" without a zone; they
// are read as UTC wall-clock times, as written.
package snds
