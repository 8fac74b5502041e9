/** The one stylesheet, served from /ui/static/ui.css (CSP style-src 'self': no inline style). */
export const STYLESHEET = `
:root { color-scheme: light dark; --accent: #2563eb; --muted: #6b7280; --line: #d1d5db; --ok: #15803d; --bad: #b91c1c; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.5 system-ui, sans-serif; }
header { display: flex; gap: 1.5em; align-items: center; padding: .6em 1.2em; border-bottom: 1px solid var(--line); }
nav { display: flex; gap: 1em; align-items: center; flex: 1; }
nav .who { margin-left: auto; color: var(--muted); }
main { max-width: 70em; padding: 1em 1.2em; }
h1 { font-size: 1.4em; margin: .2em 0 .8em; }
h2 { font-size: 1.1em; margin: 1.4em 0 .5em; }
a { color: var(--accent); }
table { border-collapse: collapse; width: 100%; margin: .5em 0 1em; }
th, td { text-align: left; padding: .3em .6em; border-bottom: 1px solid var(--line); vertical-align: top; }
form.inline { display: inline; margin: 0; }
form.stack { display: grid; gap: .5em; max-width: 24em; }
form.row { display: flex; gap: .5em; align-items: end; flex-wrap: wrap; }
label { display: grid; gap: .2em; }
input[type=text], input[type=email], input[type=password] { padding: .35em .5em; border: 1px solid var(--line); border-radius: 4px; font: inherit; }
button { padding: .3em .8em; border: 1px solid var(--line); border-radius: 4px; background: transparent; font: inherit; cursor: pointer; }
button.danger { color: var(--bad); border-color: var(--bad); }
.flash { padding: .6em 1em; border-radius: 4px; margin-bottom: 1em; border: 1px solid var(--line); }
.flash.ok { border-color: var(--ok); }
.flash.error { border-color: var(--bad); color: var(--bad); }
code.secret { display: inline-block; font-size: 1.2em; padding: .3em .6em; border: 1px dashed var(--line); user-select: all; }
pre { overflow-x: auto; padding: .6em; border: 1px solid var(--line); border-radius: 4px; }
.muted { color: var(--muted); }
.cards { display: flex; gap: 1em; flex-wrap: wrap; }
.card { border: 1px solid var(--line); border-radius: 6px; padding: .6em 1em; min-width: 10em; }
.card .n { font-size: 1.6em; font-weight: 600; }
svg.chart { width: 100%; max-width: 60em; height: auto; }
svg.chart .accepted { fill: #2563eb; }
svg.chart .delivered { fill: #16a34a; }
svg.chart .deferred { fill: #d97706; }
svg.chart .bounced { fill: #dc2626; }
svg.chart text { font-size: 10px; fill: currentColor; }
svg.chart line { stroke: var(--line); }
.legend span { margin-right: 1em; }
.legend i { display: inline-block; width: .8em; height: .8em; margin-right: .3em; }
.legend .accepted { background: #2563eb; } .legend .delivered { background: #16a34a; }
.legend .deferred { background: #d97706; } .legend .bounced { background: #dc2626; }
`;
