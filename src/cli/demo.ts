// Placeholder replaced by the demo implementation.
import { Command } from 'commander';
export function demoCommand(): Command {
  return new Command('demo').description('build a small lab, show every mode working, clean up');
}
