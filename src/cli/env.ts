/**
 * @module An environment variable for every flag of every command, shown in `--help` (commander's
 * "(env: …)"). Flags shared by many commands declare a short name where they are defined (NFLTR_RELAY,
 * NFLTR_API_KEY, NFLTR_SERVER, …); every other flag gets `NFLTR_<COMMAND>_<FLAG>` (`nfltr worker
 * --max-tasks` → NFLTR_WORKER_MAX_TASKS), named after the top-level command so one variable never
 * means two things. Precedence: flag > environment variable > saved login (./credentials.ts).
 */
import { Command, type Option } from 'commander';
import { die } from './options.js';

const upper = (s: string) => s.replace(/^-+/, '').replace(/-/g, '_').toUpperCase();

/** `NFLTR_<COMMAND>_<FLAG>` for a flag of `command` (a top-level command's name). */
export const envName = (command: string, long: string): string => `NFLTR_${upper(command)}_${upper(long)}`;

/** Calls `fn` for every option of `cmd` and its subcommands, with the top-level command's name. */
export function eachOption(cmd: Command, fn: (option: Option, command: Command, top: string) => void) {
  const walk = (c: Command, top: string) => {
    for (const o of c.options) fn(o, c, top);
    for (const sub of c.commands) walk(sub, top);
  };
  for (const sub of cmd.commands) walk(sub, sub.name());
}

/**
 * The `nfltr` program and its commands: an option added without an environment variable gets its own
 * (commander wires a variable only when the option has it as it is added, hence here).
 */
export class NfltrCommand extends Command {
  override createCommand(name?: string): Command {
    return new NfltrCommand(name);
  }

  override addOption(option: Option): this {
    let top: Command = this;
    while (top.parent?.parent) top = top.parent;
    // A hidden option is an internal mode (claude-mcp's permission bridge), not a user's flag.
    if (!option.envVar && option.long && !option.hidden && top.parent)
      option.env(envName(top.name(), option.long));
    return super.addOption(option);
  }
}

const TRUE = ['true', 'yes', 'on', '1'];
const FALSE = ['false', 'no', 'off', '0'];

/**
 * Commander takes any value of a boolean flag's variable as "on": here `NFLTR_TLS=false` (or `0`,
 * `no`, `off`) is off, any variable set to nothing is unset, and another value is a usage error naming it.
 */
export function normalizeEnv(program: Command, env: NodeJS.ProcessEnv = process.env): void {
  eachOption(program, (o) => {
    const name = o.envVar;
    if (!name || env[name] === undefined) return;
    const value = env[name]!.trim().toLowerCase();
    if (value === '') delete env[name];
    else if (o.required || o.optional) return;
    else if (FALSE.includes(value)) delete env[name];
    else if (!TRUE.includes(value))
      die(`${name}=${env[name]}: expected true or false (it sets ${o.long})`, 2);
  });
}
