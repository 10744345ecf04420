// A Stryker ignorer: the text of an error message is not locking behaviour.
// String and template literals inside the arguments of `new …Error(…)` are
// left alone (the host, ref and holders passed beside them are still
// mutated); everything else in the scope is mutated.

function isErrorConstruction(path) {
  if (!path.isNewExpression()) return false;
  const callee = path.node.callee;
  return callee.type === "Identifier" && /Error$/.test(callee.name);
}

function insideErrorConstruction(path) {
  for (let p = path.parentPath; p; p = p.parentPath) {
    if (isErrorConstruction(p)) return true;
    if (p.isFunction() || p.isStatement()) return false;
  }
  return false;
}

export const strykerPlugins = [{
  kind: "Ignore",
  name: "error-messages",
  value: {
    shouldIgnore(path) {
      if (!(path.isStringLiteral() || path.isTemplateLiteral())) return undefined;
      return insideErrorConstruction(path) ? "the text of an error message" : undefined;
    },
  },
}];
