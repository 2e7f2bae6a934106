/**
 * @module `--print-systemd-unit` for `nfltr relay` and `nfltr worker`: a unit that runs the same command
 * line as a service. The API key never enters the unit: systemd reads the key file as a credential
 * (`LoadCredential=`, readable by the service alone) and the command gets `--api-key-file
 * %d/nfltr-api-key` (`%d` is the service's credentials folder).
 */
import { resolve } from 'node:path';

export const PRINT_UNIT_FLAG = '--print-systemd-unit';
const KEY_FILE_DEFAULT = '/etc/nfltr/api-key';

/** One ExecStart word: quoted, with `%` and `$` escaped so systemd expands neither (but our own `%d`). */
function word(arg: string): string {
  const escaped = arg.replace(/%/g, '%%').replace(/\$/g, '$$$$');
  return /^[\w@%+=:,./-]+$/.test(escaped) ? escaped : `"${escaped.replace(/(["\\])/g, '\\$1')}"`;
}

/** The value of `--flag V` or `--flag=V` in args, if present. */
function flagValue(args: string[], flag: string): string | undefined {
  for (let i = 0; i < args.length; i++) {
    if (args[i] === flag) return args[i + 1];
    if (args[i]!.startsWith(`${flag}=`)) return args[i]!.slice(flag.length + 1);
  }
  return undefined;
}

/** args without `--flag` (and its value when it takes one). */
function without(args: string[], flag: string, takesValue: boolean): string[] {
  const out: string[] = [];
  for (let i = 0; i < args.length; i++) {
    if (args[i] === flag) {
      if (takesValue) i++;
    } else if (!args[i]!.startsWith(`${flag}=`)) out.push(args[i]!);
  }
  return out;
}

export interface UnitInput {
  /** `relay` or `worker`. */
  command: 'relay' | 'worker';
  /** The command's arguments after its name, as typed. */
  args: string[];
  /** Absolute node and nfltr script paths for ExecStart. */
  execPath: string;
  script: string;
}

/**
 * The unit text. The worker's key comes from the file given with `--api-key-file` (else
 * /etc/nfltr/api-key); a key given with `--api-key` is dropped, never printed. State lives under
 * /var/lib/nfltr/<command> (StateDirectory=) unless the command line names its own folder.
 */
export function systemdUnit(input: UnitInput): string {
  let args = without(input.args, PRINT_UNIT_FLAG, false);
  const given = flagValue(args, '--api-key-file');
  // LoadCredential= wants an absolute path.
  const keyFile = input.command !== 'worker' ? '' : given ? resolve(given) : KEY_FILE_DEFAULT;
  args = without(without(args, '--api-key', true), '--api-key-file', true);
  // A one-shot that edits the pins and exits, not part of the service.
  args = without(args, '--accept-planner-key', true);
  const stateFlag = input.command === 'relay' ? '--data-dir' : '--state-dir';
  if (flagValue(args, stateFlag) === undefined) args.push(stateFlag, `/var/lib/nfltr/${input.command}`);
  // `--executor-user` needs a root worker; otherwise the service runs as its own unprivileged user.
  const asRoot = input.command === 'worker' && flagValue(args, '--executor-user') !== undefined;
  const exec = [input.execPath, resolve(input.script), input.command, ...args].map(word);
  if (keyFile) exec.push('--api-key-file', '%d/nfltr-api-key');
  const what = input.command === 'relay' ? 'relay' : 'worker (runs tasks through its MCP executor)';
  return [
    '[Unit]',
    `Description=nfltr ${what}`,
    'Wants=network-online.target',
    'After=network-online.target',
    '',
    '[Service]',
    'Type=exec',
    `ExecStart=${exec.join(' ')}`,
    ...(keyFile ? [`LoadCredential=nfltr-api-key:${keyFile}`] : []),
    ...(asRoot
      ? ['# --executor-user: the worker runs as root to start executors as that user']
      : [
          '# create the user once: useradd --system --home-dir /var/lib/nfltr --shell /usr/sbin/nologin nfltr',
          'User=nfltr',
          'Group=nfltr',
        ]),
    'StateDirectory=nfltr',
    'StateDirectoryMode=0700',
    'Environment=HOME=/var/lib/nfltr',
    'Restart=on-failure',
    'RestartSec=5s',
    // SIGTERM lets a worker finish its tasks within --shutdown-grace (30 s by default).
    'TimeoutStopSec=60s',
    `NoNewPrivileges=${asRoot ? 'no' : 'yes'}`,
    'PrivateTmp=yes',
    '',
    '[Install]',
    'WantedBy=multi-user.target',
    '',
  ].join('\n');
}

/** Prints the unit for the command line of this process and exits 0. */
export function printSystemdUnit(command: UnitInput['command']): never {
  process.stdout.write(
    systemdUnit({
      command,
      // After the command name; global options given before it (--log-level) are not carried.
      args: process.argv.slice(process.argv.indexOf(command, 2) + 1),
      execPath: process.execPath,
      script: process.argv[1] ?? 'nfltr',
    }),
  );
  process.exit(0);
}
