// Runs Apache Kafka's own kafka-acls tool (org.apache.kafka.tools.AclCommand) once per
// invocation recorded in a file, in one JVM: a JVM per `acl` line of infra/kafka/acls.sh
// would take minutes on a small machine. The file holds one argument per line, and an
// empty line ends each invocation. AclCommand exits the JVM with status 1 on any error.
//
// Usage: java -cp '<kafka libs>/*' AclBatch.java INVOCATIONS
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

public class AclBatch {
    public static void main(String[] args) throws Exception {
        List<String> current = new ArrayList<>();
        int ran = 0;
        for (String line : Files.readAllLines(Path.of(args[0]))) {
            if (!line.isEmpty()) {
                current.add(line);
                continue;
            }
            if (!current.isEmpty()) {
                org.apache.kafka.tools.AclCommand.main(current.toArray(new String[0]));
                ran++;
                current.clear();
            }
        }
        System.out.println("AclBatch: " + ran + " kafka-acls invocation(s) done");
    }
}
