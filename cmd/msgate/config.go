package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/msgate/msgate/policy/config"
)

// newFlags returns a flag set that every command shares: -config.
func newFlags(name string, stderr io.Writer) (*flag.FlagSet, *string) {
	fs := flag.NewFlagSet("msgate "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "config file (default "+config.DefaultPath+" when it exists, else built-in defaults)")
	return fs, path
}

// loadConfig reads the named file, or the default path when it exists, or
// returns the built-in defaults. source says which, for messages.
func loadConfig(path string) (cfg *config.Config, source string, err error) {
	if path == "" {
		if _, err := os.Stat(config.DefaultPath); err == nil {
			path = config.DefaultPath
		} else if !errors.Is(err, os.ErrNotExist) {
			return nil, config.DefaultPath, fmt.Errorf("reading %s: %w", config.DefaultPath, err)
		} else {
			return config.Default(), "built-in defaults", nil
		}
	}
	cfg, err = config.Load(path)
	return cfg, path, err
}

func newLogger(format string, level zap.AtomicLevel, w io.Writer) *zap.Logger {
	encCfg := zap.NewProductionEncoderConfig()
	encCfg.TimeKey = "ts"
	encCfg.EncodeTime = isoTime
	var enc zapcore.Encoder
	if format == "console" {
		encCfg.EncodeLevel = zapcore.CapitalLevelEncoder
		enc = zapcore.NewConsoleEncoder(encCfg)
	} else {
		enc = zapcore.NewJSONEncoder(encCfg)
	}
	return zap.New(zapcore.NewCore(enc, zapcore.Lock(zapcore.AddSync(w)), level))
}
