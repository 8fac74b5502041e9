/**
 * The dashboard's chart: messages per hour for the last 24 hours as inline SVG bars (server-drawn:
 * no script, no image request). One group of four bars per hour; colours come from the stylesheet.
 */
import { html, type SafeHtml } from "../html.js";

export const CHART_SERIES = ["accepted", "delivered", "deferred", "bounced"] as const;
export type ChartSeries = (typeof CHART_SERIES)[number];

export interface ChartHour {
  start: number;
  counts: Record<ChartSeries, number>;
}

const WIDTH = 960;
const HEIGHT = 220;
const TOP = 10;
const BOTTOM = 24;
const LEFT = 36;

export function hourlyChart(hours: readonly ChartHour[]): SafeHtml {
  const max = Math.max(1, ...hours.flatMap((h) => CHART_SERIES.map((s) => h.counts[s])));
  const plotH = HEIGHT - TOP - BOTTOM;
  const groupW = (WIDTH - LEFT) / Math.max(1, hours.length);
  const barW = Math.max(1, (groupW - 4) / CHART_SERIES.length);
  const y = (v: number) => TOP + plotH - (v / max) * plotH;
  const bars = hours.map((h, i) => {
    const x0 = LEFT + i * groupW + 2;
    const hour = `${String(new Date(h.start).getUTCHours()).padStart(2, "0")}:00`;
    return html`<g>${CHART_SERIES.map((s, j) => {
      const v = h.counts[s];
      const top = y(v);
      return html`<rect class="bar ${s}" x="${(x0 + j * barW).toFixed(1)}" y="${top.toFixed(1)}" width="${(barW - 0.5).toFixed(1)}" height="${(TOP + plotH - top).toFixed(1)}"><title>${hour} UTC: ${v} ${s}</title></rect>`;
    })}${i % 3 === 0 ? html`<text x="${x0.toFixed(1)}" y="${HEIGHT - 8}">${hour}</text>` : ""}</g>`;
  });
  return html`<svg class="chart" viewBox="0 0 ${WIDTH} ${HEIGHT}" role="img" aria-label="Messages per hour, last 24 hours (UTC)">
<line x1="${LEFT}" y1="${TOP + plotH}" x2="${WIDTH}" y2="${TOP + plotH}"/>
<text x="0" y="${TOP + 8}">${max}</text><text x="0" y="${TOP + plotH}">0</text>
${bars}
</svg>
<p class="legend">${CHART_SERIES.map((s) => html`<span><i class="${s}"></i>${s}</span>`)}</p>`;
}
