package io.streampulse.bench;

import java.io.BufferedWriter;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;

/**
 * What the harness reads from a contender, as bench/contenders/report.py writes it: a JSON report
 * rewritten once a second by a daemon thread (so a run that runs out of time still shows how far
 * it got) and the final windows, one line each, in a file beside it.
 */
final class Report {
  private final Path path;
  private final Path windowsPath;
  private final long expectedWindows;
  private volatile long records;
  private volatile long events;
  private volatile long windows;
  private volatile double firstMs = -1;
  private volatile double lastMs = -1;
  private volatile boolean done;
  private BufferedWriter out;

  Report(Path path, long expectedWindows) {
    this.path = path;
    String name = path.getFileName().toString();
    String stem = name.endsWith(".json") ? name.substring(0, name.length() - 5) : name;
    this.windowsPath = path.resolveSibling(stem + ".windows");
    this.expectedWindows = expectedWindows;
    Thread heartbeat =
        new Thread(
            () -> {
              while (!done) {
                write();
                try {
                  Thread.sleep(1000);
                } catch (InterruptedException e) {
                  return;
                }
              }
            },
            "report");
    heartbeat.setDaemon(true);
    heartbeat.start();
  }

  /** Called on the stream thread only, so the plain increments do not race; windows are counted
   * on the results reader's thread, under the lock. */
  void consumed() {
    if (firstMs < 0) firstMs = System.currentTimeMillis();
    records++;
  }

  void event() {
    events++;
  }

  /** One final window, {@code size region start count revenue fare_min fare_max}. */
  synchronized void window(String line) {
    try {
      if (out == null) out = Files.newBufferedWriter(windowsPath, StandardCharsets.UTF_8);
      out.write(line);
      out.write('\n');
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
    windows++;
    lastMs = System.currentTimeMillis();
    if (!done && windows >= expectedWindows) {
      done = true;
      write();
    }
  }

  private synchronized void write() {
    try {
      if (out != null) {
        out.flush();
        if (done) {
          out.close();
          out = null;
        }
      }
      String json =
          "{\"done\":" + done + ",\"records\":" + records + ",\"events\":" + events
              + ",\"windows\":" + windows + ",\"first_ms\":" + (firstMs < 0 ? "null" : firstMs)
              + ",\"last_ms\":" + (lastMs < 0 ? "null" : lastMs) + "}";
      Path tmp = path.resolveSibling(path.getFileName() + ".tmp");
      Files.writeString(tmp, json);
      Files.move(tmp, path, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
    } catch (IOException e) {
      System.err.println("report: " + e);
    }
  }
}
