/*
 * Native binding of key-request-native.c (XS host function; this `@` syntax is XS's, not standard JavaScript,
 * which is why eslint and prettier skip this file). Use key-request.ts, which checks the options first.
 */

export function generate(subject, bits) @ "xs_keyrequest_generate";
