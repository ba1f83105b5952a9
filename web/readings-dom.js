// The reading page's panels build their elements with this: text through textContent,
// never HTML.

// An element ``tag`` with attributes ``props`` (``dataset`` and ``className`` set as
// properties) and ``text``.
export function html(tag, props = {}, text = "") {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key === "dataset") Object.assign(node.dataset, value);
    else if (key === "className") node.className = value;
    else node.setAttribute(key, value);
  }
  if (text) node.textContent = text;
  return node;
}
