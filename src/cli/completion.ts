// `flt completion bash|zsh|fish`: a completion script made from the parser itself (program.ts),
// so it names exactly the commands and options `flt` accepts. It completes command words and
// option names; after an option that takes a value it offers file names. zsh runs the bash
// script through bashcompinit.

import type { Command, Option } from 'commander';
import { FltError } from '../../sync/errors.js';

export const SHELLS = ['bash', 'zsh', 'fish'] as const;

interface Node {
  /** Words after `flt`, space-separated; '' for `flt` itself. */
  readonly path: string;
  readonly cmd: Command;
}

function nodesOf(cmd: Command, path = ''): Node[] {
  const children = cmd.commands.filter((c) => c.name() !== 'help');
  const here: Node = { path, cmd };
  return [
    here,
    ...children.flatMap((c) => nodesOf(c, path === '' ? c.name() : `${path} ${c.name()}`)),
  ];
}

const longName = (o: Option) => o.long ?? '';
const takesValue = (o: Option) => o.required || o.optional;
const visible = (cmd: Command) => cmd.commands.filter((c) => c.name() !== 'help');

export function completionScript(program: Command, shell: string): string {
  if (shell === 'bash') return bash(program);
  if (shell === 'zsh') return `autoload -U +X bashcompinit && bashcompinit\n${bash(program)}`;
  if (shell === 'fish') return fish(program);
  throw new FltError(
    'BAD_ARGUMENT',
    `unknown shell ${JSON.stringify(shell)}: ${SHELLS.join(', ')}`,
  );
}

function bash(program: Command): string {
  const nodes = nodesOf(program);
  const globals = [...program.options.map(longName).filter(Boolean), '--help'];
  const withValue = nodes
    .flatMap((n) => n.cmd.options.filter(takesValue).map(longName))
    .filter((v, i, all) => v !== '' && all.indexOf(v) === i);
  const valueCase = withValue.join('|');
  const cases = nodes.map((n) => {
    const words = [...visible(n.cmd).map((c) => c.name()), ...n.cmd.options.map(longName)];
    return `    '${n.path}') words='${words.filter(Boolean).join(' ')}' ;;`;
  });
  return `# flt completion for bash: source <(flt completion bash)
_flt() {
  local cur=\${COMP_WORDS[COMP_CWORD]} prev=\${COMP_WORDS[COMP_CWORD-1]} path='' words='' i w
  case $prev in
    ${valueCase}) COMPREPLY=($(compgen -f -- "$cur")); return ;;
  esac
  for ((i = 1; i < COMP_CWORD; i++)); do
    w=\${COMP_WORDS[i]}
    case $w in
      ${valueCase}) ((i++)) ;;
      -*) ;;
      *) path="\${path:+$path }$w" ;;
    esac
  done
  case $path in
${cases.join('\n')}
  esac
  COMPREPLY=($(compgen -W "$words ${globals.join(' ')}" -- "$cur"))
}
complete -F _flt flt
`;
}

function fish(program: Command): string {
  const q = (s: string) => `'${s.replaceAll('\\', '\\\\').replaceAll("'", "\\'")}'`;
  const lines = ['# flt completion for fish: flt completion fish | source', 'complete -c flt -f'];
  for (const { path, cmd } of nodesOf(program)) {
    const words = path === '' ? [] : path.split(' ');
    // the command's words are all seen, and none of its subcommands yet
    const subs = visible(cmd).map((c) => c.name());
    const here = [
      ...words.map((w) => `__fish_seen_subcommand_from ${w}`),
      ...(subs.length === 0 ? [] : [`not __fish_seen_subcommand_from ${subs.join(' ')}`]),
    ];
    const cond = here.length === 0 ? '' : ` -n ${q(here.join('; and '))}`;
    for (const sub of visible(cmd))
      lines.push(`complete -c flt${cond} -a ${sub.name()} -d ${q(sub.description())}`);
    for (const o of cmd.options) {
      if (!o.long) continue;
      const value = takesValue(o) ? ' -r -F' : '';
      const scope = path === '' ? '' : cond;
      lines.push(`complete -c flt${scope} -l ${o.long.slice(2)}${value} -d ${q(o.description)}`);
    }
  }
  return `${lines.join('\n')}\n`;
}
