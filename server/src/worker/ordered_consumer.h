#pragma once

#include <condition_variable>
#include <cstddef>
#include <exception>
#include <functional>
#include <mutex>
#include <thread>

namespace lossguard::worker {

// Consumes a batch's items on a thread of its own while a producer still makes them: the writer
// stores a batch's rows while the analyzers judge the rows already stored. Items are consumed in
// order, each once the producer has published it, in chunks (what was published when the consumer
// looked). `consume(i)` returning false ends the batch's consumption there.
//
//   consumer.Begin(size, consume);    // the producer's thread
//   consumer.Publish(n);              // items [0, n) are ready; n grows to `size`
//   std::size_t done = consumer.Finish();   // after Publish(size): waits for the chunk in
//                                           // progress, if any, and rethrows consume's exception
// Finish returns how many items the consumer took, in order from 0; the producer's thread takes
// over from there. The consumer starts no chunk once Finish is called: the producer, on a core
// already, does the rest instead of waiting for the consumer's thread to be scheduled (on a busy
// machine that wait is what the producer would spend most of its time in).
// When the producer fails before publishing everything, Cancel(): consumption stops after the
// chunk in progress. One batch at a time; Begin, Publish, Finish and Cancel from one thread.
class OrderedConsumer {
 public:
  OrderedConsumer();
  // Cancels a batch in progress and joins the thread.
  ~OrderedConsumer();
  OrderedConsumer(const OrderedConsumer&) = delete;
  OrderedConsumer& operator=(const OrderedConsumer&) = delete;

  // Starts consuming a batch of `size` items. Throws std::logic_error while one is in progress.
  void Begin(std::size_t size, std::function<bool(std::size_t)> consume);
  void Publish(std::size_t ready);
  std::size_t Finish();
  void Cancel();
  bool busy() const { return in_batch_; }

 private:
  void Run();
  // Ends the batch once no chunk is in progress; returns the count consumed (and the error, if
  // any).
  std::size_t Stop(std::exception_ptr& error);

  std::mutex mutex_;
  std::condition_variable wake_;  // the consumer: items published, a batch begun, or stopping
  std::condition_variable done_;  // the producer: the batch ended
  // Guarded by mutex_:
  bool stopping_ = false;
  bool active_ = false;   // a batch is being consumed
  bool stopped_ = false;  // its producer called Finish or Cancel: no chunk is started
  bool working_ = false;  // a chunk is being consumed
  std::size_t size_ = 0, ready_ = 0, consumed_ = 0;
  std::function<bool(std::size_t)> consume_;
  std::exception_ptr error_;
  bool in_batch_ = false;  // the producer's view: Begin without Finish/Cancel yet
  std::thread thread_;
};

}  // namespace lossguard::worker
