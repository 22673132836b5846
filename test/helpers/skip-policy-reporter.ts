// Vitest reporter that enforces the CI skip policy: under CI (or WEFT_STRICT_SKIPS=1) any skipped test fails
// the run unless it was skipped through requireKernelFeature() for a kernel feature this kernel lacks.
import type { Reporter, TestModule } from 'vitest/node';
import { KERNEL_FEATURE_SKIP_PREFIX } from './requirements.js';

export default class SkipPolicyReporter implements Reporter {
  onTestRunEnd(testModules: readonly TestModule[]): void {
    const strict = process.env.CI === 'true' || process.env.WEFT_STRICT_SKIPS === '1';
    const skipped: string[] = [];
    const kernelSkips: string[] = [];
    for (const mod of testModules) {
      for (const test of mod.children.allTests()) {
        const result = test.result();
        if (result.state !== 'skipped') continue;
        const line = `${mod.moduleId.replace(process.cwd() + '/', '')} > ${test.fullName}${result.note === undefined ? '' : ` (${result.note})`}`;
        if (result.note?.startsWith(KERNEL_FEATURE_SKIP_PREFIX) === true) kernelSkips.push(line);
        else skipped.push(line);
      }
    }
    for (const line of kernelSkips) process.stdout.write(`skipped for a missing kernel feature: ${line}\n`);
    if (skipped.length === 0) return;
    process.stdout.write(`\n${skipped.length} test(s) skipped for a reason other than a missing kernel feature:\n${skipped.map((l) => '  ' + l).join('\n')}\n`);
    if (strict) {
      process.stdout.write('skip policy: CI runs every test as root with every package installed, so these skips fail the run\n');
      process.exitCode = 1;
    }
  }
}
