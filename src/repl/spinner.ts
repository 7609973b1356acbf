/**
 * A one-line spinner on stderr for calls that take a while. It appears only
 * on a terminal, only after `delayMs` (quick calls never flicker), and
 * erases itself when stopped.
 */
const FRAMES = ["⠋", "⠙", "⠹", "⠸", "⠼", "⠴", "⠦", "⠧", "⠇", "⠏"];

export class Spinner {
  private timer: NodeJS.Timeout | undefined;
  private delay: NodeJS.Timeout | undefined;
  private shown = false;
  private started = 0;
  private frame = 0;

  constructor(
    private readonly stream: NodeJS.WriteStream = process.stderr,
    private readonly enabled: boolean = stream.isTTY === true,
    private readonly delayMs = 250,
  ) {}

  start(label: string): void {
    if (!this.enabled) return;
    this.stop();
    this.started = Date.now();
    this.delay = setTimeout(() => {
      this.shown = true;
      this.draw(label);
      this.timer = setInterval(() => this.draw(label), 100);
      this.timer.unref();
    }, this.delayMs);
    this.delay.unref();
  }

  private draw(label: string): void {
    const secs = ((Date.now() - this.started) / 1000).toFixed(1);
    this.frame = (this.frame + 1) % FRAMES.length;
    this.stream.write(`\r\x1b[2K${FRAMES[this.frame]} ${label} ${secs}s`);
  }

  stop(): void {
    if (this.delay) clearTimeout(this.delay);
    if (this.timer) clearInterval(this.timer);
    this.delay = this.timer = undefined;
    if (this.shown) this.stream.write("\r\x1b[2K");
    this.shown = false;
  }
}
