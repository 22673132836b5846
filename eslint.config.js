// Lint rules: typescript-eslint's type-aware checks, plus the footguns this codebase bans (each with its reason).
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', '**/assembly/**', '**/build/**', 'runtime/native/**', 'eslint.config.js', 'bin/*.js', 'test/fixtures/functions/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname } },
    rules: {
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': ['error', { checksVoidReturn: { arguments: false } }],
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/consistent-type-imports': 'error',
      'no-restricted-properties': [
        'error',
        { object: 'describe', property: 'only', message: 'a focused test hides every other test from CI' },
        { object: 'it', property: 'only', message: 'a focused test hides every other test from CI' },
        { object: 'test', property: 'only', message: 'a focused test hides every other test from CI' },
      ],
      'no-restricted-syntax': ['error', { selector: 'TSEnumDeclaration', message: 'use an `as const` object and a string union' }],
    },
  },
  {
    files: ['**/*.test.ts', 'test/**/*.ts'],
    rules: {
      '@typescript-eslint/no-unsafe-assignment': 'off',
      '@typescript-eslint/no-unsafe-member-access': 'off',
      '@typescript-eslint/no-non-null-assertion': 'off',
    },
  },
);
