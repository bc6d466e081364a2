-- msgate.lua: drives a running msgate the way an MTA does, with
-- miltertest (OpenDKIM's milter test driver; Debian package miltertest).
--
--   miltertest -D port=8895 -s testdata/miltertest/msgate.lua
--
-- Variables (-D name=value):
--   port         msgate's milter port (required)
--   host         its address (default 127.0.0.1)
--   account      the SMTP AUTH login sent as {auth_authen} (default alice)
--   expect_over  what the Microsoft recipient over the limit must get:
--                "replycode" (default) or "continue" (which must fail:
--                the test of this script's own failure path)
--
-- msgate must run with a limit of 1 Microsoft recipient per account
-- (a [[rate]] with limit = 1), a [feedback] secret (for the stamp) and a
-- resolver that answers example.net with a non-Microsoft MX.
--
-- Every check prints "ok: ..." or "FAIL: ..."; a failure ends the script
-- with an error, and miltertest then exits 1 (it prints no message of its
-- own, hence the FAIL line). The last line is "PASS" when every check held.

local host = host or "127.0.0.1"
local account = account or "alice"
local expect_over = expect_over or "replycode"

local function fail(msg)
	mt.echo("FAIL: " .. msg)
	error(msg)
end

local function check(cond, msg)
	if not cond then
		fail(msg)
	end
	mt.echo("ok: " .. msg)
end

local names = {
	[SMFIR_CONTINUE] = "SMFIR_CONTINUE",
	[SMFIR_REPLYCODE] = "SMFIR_REPLYCODE",
	[SMFIR_ACCEPT] = "SMFIR_ACCEPT",
	[SMFIR_REJECT] = "SMFIR_REJECT",
	[SMFIR_TEMPFAIL] = "SMFIR_TEMPFAIL",
	[SMFIR_DISCARD] = "SMFIR_DISCARD",
}

local function reply_name(r)
	return names[r] or tostring(r)
end

-- step runs one milter command (an mt.* call returning nil on success)
-- and checks the reply msgate sent to it.
local function step(what, want, err)
	if err ~= nil then
		fail(what .. ": " .. tostring(err))
	end
	local got = mt.getreply(conn)
	if got ~= want then
		fail(what .. ": got " .. reply_name(got) .. ", want " .. reply_name(want))
	end
	mt.echo("ok: " .. what .. " -> " .. reply_name(want))
end

if port == nil then
	fail("no port: run miltertest -D port=N")
end

conn = mt.connect("inet:" .. port .. "@" .. host, 40, 0.25)
if conn == nil then
	fail("cannot connect to msgate at inet:" .. port .. "@" .. host)
end

-- Connect (negotiation happens implicitly first), with the macros
-- Postfix and Sendmail send.
mt.macro(conn, SMFIC_CONNECT, "j", "mx.test.local", "{daemon_name}", "mx", "{client_addr}", "192.0.2.10")
step("connect", SMFIR_CONTINUE, mt.conninfo(conn, "client.test.local", "192.0.2.10"))

-- What msgate negotiated: it may add a header (the stamp) and wants
-- neither headers nor body.
check(mt.test_action(conn, SMFIF_ADDHDRS), "msgate may add headers (the X-Msgate-Ref stamp)")
check(mt.test_option(conn, SMFIP_NOHDRS), "msgate skips the headers")
check(mt.test_option(conn, SMFIP_NOBODY), "msgate skips the body")

-- Message 1: one Microsoft recipient (the whole limit) and one other.
mt.macro(conn, SMFIC_MAIL, "i", "MT0001", "{auth_authen}", account, "{client_addr}", "192.0.2.10")
step("MAIL FROM:<" .. account .. "@test.local> as " .. account, SMFIR_CONTINUE, mt.mailfrom(conn, "<" .. account .. "@test.local>"))
step("RCPT TO:<jo@outlook.com>", SMFIR_CONTINUE, mt.rcptto(conn, "<jo@outlook.com>"))
step("RCPT TO:<pat@example.net>", SMFIR_CONTINUE, mt.rcptto(conn, "<pat@example.net>"))
step("end of message 1", SMFIR_CONTINUE, mt.eom(conn))
check(mt.eom_check(conn, MT_HDRADD, "X-Msgate-Ref"), "message 1 stamped with X-Msgate-Ref")
local stamp = mt.getheader(conn, "X-Msgate-Ref", 0)
check(stamp ~= nil and string.sub(stamp, 1, 3) == "v1.", "the stamp is a v1 token")

-- Message 2 on the same connection: the account is over its limit.
mt.macro(conn, SMFIC_MAIL, "i", "MT0002", "{auth_authen}", account, "{client_addr}", "192.0.2.10")
step("MAIL FROM:<" .. account .. "@test.local> again", SMFIR_CONTINUE, mt.mailfrom(conn, "<" .. account .. "@test.local>"))
local over = SMFIR_REPLYCODE
if expect_over == "continue" then
	over = SMFIR_CONTINUE
end
-- The refusal is a custom reply (451 4.7.1 and msgate's text): the
-- milter reply SMFIR_REPLYCODE. (mt.eom_check(conn, MT_SMTPREPLY, ...)
-- cannot check it: Debian's build returns false after RCPT.)
step("RCPT TO:<kim@hotmail.com> over the limit", over, mt.rcptto(conn, "<kim@hotmail.com>"))
step("RCPT TO:<lee@example.net> (not Microsoft's: never limited)", SMFIR_CONTINUE, mt.rcptto(conn, "<lee@example.net>"))
check(mt.abort(conn) == nil, "message 2 aborted")

-- Message 3: another account is untouched.
mt.macro(conn, SMFIC_MAIL, "i", "MT0003", "{auth_authen}", "bob", "{client_addr}", "192.0.2.10")
step("MAIL FROM:<bob@test.local> as bob", SMFIR_CONTINUE, mt.mailfrom(conn, "<bob@test.local>"))
step("RCPT TO:<jo@outlook.com> from bob", SMFIR_CONTINUE, mt.rcptto(conn, "<jo@outlook.com>"))
check(mt.abort(conn) == nil, "message 3 aborted")

check(mt.disconnect(conn) == nil, "disconnected")
mt.echo("PASS")
