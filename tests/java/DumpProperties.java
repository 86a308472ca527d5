// Reads each .properties file named on the command line with Java's own
// java.util.Properties.load(InputStream) (ISO-8859-1, as TorchServe reads
// config.properties) and prints its entries, so tests can compare servetune's
// parser with the reference. Output per file: a "== <path>" line, then one
// line per entry, sorted by key: key TAB value, where backslash and every
// character outside printable ASCII (and = and !, so no entry line looks like
// a header) is written as \\uXXXX. A file Java cannot
// load prints "!! <message>" instead of entries.
import java.io.InputStream;
import java.nio.file.Files;
import java.nio.file.Paths;
import java.util.Properties;
import java.util.TreeMap;

public class DumpProperties {
    static String encode(String text) {
        StringBuilder out = new StringBuilder();
        for (char c : text.toCharArray()) {
            if (c >= 0x20 && c < 0x7f && c != '\\' && c != '=' && c != '!') {
                out.append(c);
            } else {
                out.append(String.format("\\u%04X", (int) c));
            }
        }
        return out.toString();
    }

    public static void main(String[] args) throws Exception {
        for (String path : args) {
            System.out.println("== " + path);
            Properties properties = new Properties();
            try (InputStream stream = Files.newInputStream(Paths.get(path))) {
                properties.load(stream);
            } catch (IllegalArgumentException e) {
                System.out.println("!! " + e.getMessage());
                continue;
            }
            TreeMap<String, String> sorted = new TreeMap<>();
            for (String key : properties.stringPropertyNames()) {
                sorted.put(key, properties.getProperty(key));
            }
            for (var entry : sorted.entrySet()) {
                System.out.println(encode(entry.getKey()) + "\t" + encode(entry.getValue()));
            }
        }
    }
}
