// Flags shared by `run` and `rules`: what to capture and how (declared in config/settings.ts).
import type { Command } from 'commander';
import { addSettingOptions } from '../config/settings.js';

export function addCaptureOptions(cmd: Command): Command {
  return addSettingOptions(cmd, 'capture');
}
