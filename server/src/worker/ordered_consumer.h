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
// order, each once the producer has published it; `consume(i)` returning false ends the batch's
// consumption there (the producer's thread then takes over from item i).
//
//   consumer.Begin(size, consume);    // the producer's thread
//   consumer.Publish(n);              // items [0, n) are ready; n grows to `size`
//   std::size_t done = consumer.Finish();   // after Publish(size): waits, returns how many
//                                           // items were consumed, rethrows consume's exception
// or, when the producer fails before publishing everything, Cancel(): consumption stops after the
// item in progress. One batch at a time; Begin, Publish, Finish and Cancel from one thread.
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
  // Waits for the batch to end; returns the count consumed (and the error, if any).
  std::size_t Wait(std::exception_ptr& error);

  std::mutex mutex_;
  std::condition_variable wake_;  // the consumer: items published, a batch begun, or stopping
  std::condition_variable done_;  // the producer: the batch ended
  // Guarded by mutex_:
  bool stopping_ = false;
  bool active_ = false;     // a batch is being consumed
  bool cancelled_ = false;  // its producer gave up
  std::size_t size_ = 0, ready_ = 0, consumed_ = 0;
  std::function<bool(std::size_t)> consume_;
  std::exception_ptr error_;
  bool in_batch_ = false;  // the producer's view: Begin without Finish/Cancel yet
  std::thread thread_;
};

}  // namespace lossguard::worker
