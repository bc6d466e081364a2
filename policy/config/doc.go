// Package config loads and validates msgate's TOML configuration.
//
// It decides what a configuration file means: its syntax (TOML, with
// durations written as strings such as "90s" or "7d"), the default of every
// key the file leaves out (Default), and whether the values are usable
// (Validate). Unknown keys and values of the wrong type are errors, and every
// problem in a file is reported at once, each with its key, as an *Error, so
// that "msgate check" can list them all and the daemon can refuse to start
// on any of them.
//
// It leaves acting on the configuration to others: it opens no socket,
// resolves no name and touches no state. ParseListen only translates the
// milter socket's Postfix notation for net.Listen.
//
// Keys and the defaults are documented, for the admin, in contrib/msgate.toml.
package config
