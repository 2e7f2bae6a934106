#!/usr/bin/env node
// The bundle (scripts/bundle.mjs): one chunk per command, loaded in about half the time of dist/cli.
import '../dist/bundle/main.js';
