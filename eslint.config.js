// ESLint flat config: typescript-eslint's strict type-checked rules on every
// TypeScript file of src/, bin/, test/ and bench/, nothing stylistic.
import { defineConfig } from 'eslint/config'
import tseslint from 'typescript-eslint'

export default defineConfig(
  {
    // build and run outputs; the .js/.mjs files in the tree are compiled
    // output or fixtures served to old clients, not code we type-check
    ignores: [
      'dist/',
      'node_modules/',
      'test-artifacts/',
      'bench-results/',
      '**/*.js',
      '**/*.mjs',
      '**/*.cjs'
    ]
  },
  {
    files: ['**/*.ts'],
    extends: [tseslint.configs.strictTypeChecked],
    languageOptions: {
      parserOptions: {
        // each file gets the type information of the nearest tsconfig.json
        projectService: true,
        tsconfigRootDir: import.meta.dirname
      }
    },
    rules: {
      // numbers (counts, ports, ms, bytes) go into messages everywhere; the rest stays as strict as strictTypeChecked sets it
      '@typescript-eslint/restrict-template-expressions': ['error', {
        allowNumber: true, allowAny: false, allowBoolean: false, allowNever: false, allowNullish: false, allowRegExp: false
      }],
      // `return fail(error)` in a function that returns nothing is how every handler here refuses and stops in one line
      '@typescript-eslint/no-confusing-void-expression': ['error', { ignoreVoidReturningFunctions: true }],
      // node:test awaits the promises describe() and it() return itself (the example in typescript-eslint's docs)
      '@typescript-eslint/no-floating-promises': ['error', {
        allowForKnownSafeCalls: [{ from: 'package', package: 'node:test', name: ['describe', 'it'] }]
      }]
    }
  },
  {
    // bench/ is only in tsconfig.bench.json, which the project service never
    // picks (it looks for tsconfig.json), so bench names its program itself
    files: ['bench/**/*.ts'],
    languageOptions: {
      parserOptions: {
        projectService: false,
        project: './tsconfig.bench.json',
        tsconfigRootDir: import.meta.dirname
      }
    }
  }
)
